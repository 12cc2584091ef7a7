//! `crmdq run`: consume Kafka as the pipeline says until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;

use super::{addr, load, shutdown_signal};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    #[arg(long)]
    pub brokers: Option<String>,
    /// Roster file (contract columns) instead of the pipeline's: who is on the owner's
    /// side of a customer entry (`entered_by_owner_side`).
    #[arg(long)]
    pub roster: Option<PathBuf>,
    /// Stop after reaching the end offsets seen at start.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Serve /healthz, /readyz and /metrics on this address while running.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        brokers,
        roster,
        until_caught_up,
        http_listen,
    } = a;
    let p = load(&pipeline, warehouse.as_ref(), roster.as_ref())?;
    let http_listen = http_listen.map(|a| addr(&a, "--http-listen")).transpose()?;
    let app = crmdq::app::RunApp::build(p, brokers, until_caught_up, http_listen).await?;
    if let Some(bound) = app.http_addr() {
        println!("HTTP on http://{bound} (/healthz, /readyz, /metrics)");
    }
    let token = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let signal = tasks.spawn(shutdown_signal(token.clone()));
    let s = app.run_until_stopped(shared_clock.as_ref(), token).await;
    signal.abort();
    tasks.close();
    tasks.wait().await;
    let s = s?;
    println!(
        "consumed {} messages: {} records, {} dead letters, {} commits, {} rebalances",
        s.messages, s.records, s.dead_letters, s.commits, s.rebalances
    );
    if let Some(b) = s.busy_share() {
        println!(
            "busy {:.0}% of the time since the first message (the rest: waiting for the broker)",
            b * 100.0
        );
    }
    Ok(())
}
