//! `crmdq bench`: kernel and Kafka measurements for benches/bench.py (JSON lines on stdout).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use crmdq_pipeline::Clock;

use super::load;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    /// NDJSON input (e.g. from `crmdq generate`).
    #[arg(long)]
    pub input: PathBuf,
    /// Also measure Kafka end to end on the in-process mock cluster.
    #[arg(long)]
    pub kafka: bool,
    /// Folder for the Kafka run's warehouse (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        input,
        kafka,
        dir,
    } = a;
    let clock = shared_clock.as_ref();
    let p = load(&pipeline, None, None)?;
    let text =
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    drop(text);
    let mut out = crmdq_testkit::kernels::kernels(&p, &lines, clock.now())?;
    if kafka {
        let tmp = tempfile::tempdir()?;
        let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
        out.extend(crmdq::bench::kafka_mock(&p, &lines, &dir, clock).await?);
    }
    for k in out {
        println!("{}", serde_json::to_string(&k)?);
    }
    Ok(())
}
