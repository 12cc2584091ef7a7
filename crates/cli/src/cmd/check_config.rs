//! `crmdq check-config`: validate a pipeline file without running it, and show its compiled checks.

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;

use super::load;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Print every compiled check with its SQL.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(a: Args, _shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args { pipeline, verbose } = a;
    let p = load(&pipeline, None, None)?;
    let checker = crmdq_check::Checker::compile(&p)?;
    println!(
        "{}: ok (pipeline `{}`, time zone {}, phone region {})",
        pipeline.display(),
        p.name,
        p.time_zone_name,
        p.checks.phone_region
    );
    for w in p.alerts.warnings() {
        eprintln!("warning: {}: {w}", pipeline.display());
    }
    for rt in crmdq_schema::RecordType::ALL {
        let (missing, failed) = checker.describe(rt);
        println!(
            "  {rt}: key fields [{}], {} validity checks",
            missing
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            failed.len()
        );
        if verbose {
            for c in missing {
                println!("    missing {:<24} {}", c.name, c.sql);
            }
            for c in failed {
                println!("    check   {:<24} fails when {}", c.name, c.sql);
            }
        }
    }
    Ok(())
}
