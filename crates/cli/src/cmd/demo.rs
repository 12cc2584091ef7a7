//! `crmdq demo`: the whole pipeline on this machine: mock Kafka, synthetic stream, ingest, score, scoreboard.

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;

use super::{Format, print, print_alerts};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the demo's pipeline, roster and warehouse.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    #[arg(long, default_value_t = 12)]
    pub people: u32,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args { dir, days, people } = a;
    let clock = shared_clock.as_ref();
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("crmdq-demo"));
    let started = std::time::Instant::now();
    let r = crmdq::demo::demo(&dir, clock, days, people).await?;
    println!(
        "crmdq demo: {} messages produced to an in-process Kafka mock cluster (topic crm.records, {} partitions)",
        r.produced, r.partitions
    );
    println!(
        "consumed {} messages → {} records, {} dead letters, {} commits in {:.1}s\n",
        r.run.messages,
        r.run.records,
        r.run.dead_letters,
        r.run.commits,
        started.elapsed().as_secs_f64()
    );
    println!("Teams (whole period):");
    print(&r.teams, Format::Table)?;
    println!("\nPeople (whole period), with the rules that cost them most:");
    print(&r.people, Format::Table)?;
    println!();
    for line in &r.review {
        println!("{line}");
    }
    println!("\nDead letters by reason:");
    print(&r.dead_letters, Format::Table)?;
    println!("\nAlerts (the shipped rules, dry run):");
    print_alerts(&r.alerts, true, 0);
    println!("\nWarehouse: {}", r.dir.display());
    if let Some(o) = &r.report {
        println!(
            "Report of {} ({} pages): {}",
            o.period,
            o.pages,
            o.path.display()
        );
    }
    println!("Try next:");
    let pipeline = r.dir.parent().unwrap_or(&r.dir).join("pipeline.yaml");
    let pipeline = pipeline.display();
    println!("  crmdq alerts --pipeline {pipeline} --dry-run --date <YYYY-MM-DD>");
    if let Some(o) = &r.report {
        println!(
            "  crmdq report --pipeline {pipeline} --period {} --lang zh-CN --out report-zh   # or --format xlsx",
            o.period
        );
    }
    println!(
        "  CRMDQ_SQL_USER=me CRMDQ_SQL_PASSWORD=pw crmdq serve --pipeline {pipeline}   # then: psql -h 127.0.0.1 -p 5433 -U me -d crmdq"
    );
    println!(
        "  crmdq sql --warehouse {} \"SELECT * FROM person_daily WHERE person_id = 'chen.jing' ORDER BY dt\"",
        r.dir.display()
    );
    println!(
        "  crmdq sql --warehouse {} \"SELECT record_id, dq_missing_fields, dq_failed_checks FROM customer WHERE entered_by = 'chen.jing' AND NOT (dq_complete AND dq_valid) LIMIT 10\"",
        r.dir.display()
    );
    Ok(())
}
