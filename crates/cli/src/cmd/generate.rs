//! `crmdq generate`: write synthetic CRM data (NDJSON) and its roster (`<out>.roster.csv`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use crmdq_pipeline::Clock;

use super::UsageError;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    #[arg(long, default_value_t = 12)]
    pub people: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First business date (default: days + 7 days before today).
    #[arg(long)]
    pub start: Option<String>,
    /// Record ids count up from N+1: give each of several files that will be
    /// ingested together its own range (the same id and version is one record).
    #[arg(long, default_value_t = 0)]
    pub first_id: u64,
}

pub fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        out,
        days,
        people,
        seed,
        start,
        first_id,
    } = a;
    let clock = shared_clock.as_ref();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai")?;
    let start = match start {
        Some(s) => s
            .parse()
            .map_err(|e| UsageError(format!("--start `{s}`: {e}")))?,
        None => {
            clock.now().to_zoned(tz.clone()).date() - jiff::Span::new().days(i64::from(days) + 7)
        }
    };
    let spec = crmdq_testkit::generate::GenSpec {
        start,
        days,
        people,
        seed,
        tz,
        first_id,
    };
    let lines = crmdq_testkit::generate::generate(&spec);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    let roster = PathBuf::from(format!("{}.roster.csv", out.display()));
    std::fs::write(&roster, crmdq_testkit::generate::roster_csv(&spec))
        .with_context(|| format!("writing {}", roster.display()))?;
    let absences = PathBuf::from(format!("{}.absences.csv", out.display()));
    std::fs::write(&absences, crmdq_testkit::generate::absences_csv(&spec))
        .with_context(|| format!("writing {}", absences.display()))?;
    println!(
        "wrote {} records to {}, the roster to {} and the absences to {}",
        lines.len(),
        out.display(),
        roster.display(),
        absences.display()
    );
    Ok(())
}
