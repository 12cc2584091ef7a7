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
    /// Instead of the kernels: the cost of N small commits in one process (the input split
    /// into N parts, each ingested and committed: files, log entry, Delta publication),
    /// into `--warehouse` (a new folder or an object-store URL with the standard
    /// environment's credentials).
    #[arg(long, requires = "warehouse")]
    pub commits: Option<usize>,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        input,
        kafka,
        dir,
        commits,
        warehouse,
    } = a;
    let clock = shared_clock.as_ref();
    let p = load(&pipeline, warehouse.as_ref(), None)?;
    if let Some(n) = commits {
        return commit_cost(&p, &input, n, shared_clock).await;
    }
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

/// `--commits N`: each part's ingest timed apart (median and 90th percentile printed as
/// JSON), with one warehouse handle, as `run` commits.
async fn commit_cost(
    p: &crmdq_config::Pipeline,
    input: &std::path::Path,
    n: usize,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "--commits: at least 1");
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let tmp = tempfile::tempdir()?;
    let w = crmdq_warehouse::Warehouse::connect(&p.warehouse.location()).await?;
    let mut secs = Vec::with_capacity(n);
    let mut records = 0;
    for (i, part) in lines.chunks(lines.len().div_ceil(n).max(1)).enumerate() {
        let f = tmp.path().join(format!("part-{i}.ndjson"));
        std::fs::write(&f, part.join("\n"))?;
        let t = std::time::Instant::now();
        let s =
            crmdq_pipeline::ingest::ingest(p, &w, &[f], clock.clone(), &mut |_, _, _| {}).await?;
        secs.push(t.elapsed().as_secs_f64());
        records += s.records + s.dead_letters;
    }
    secs.sort_by(f64::total_cmp);
    let at = |q: f64| secs[((secs.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({
            "name": "commits",
            "warehouse": p.warehouse.location().to_string(),
            "commits": secs.len(),
            "records": records,
            "median_seconds": at(0.5),
            "p90_seconds": at(0.9),
            "total_seconds": secs.iter().sum::<f64>(),
        })
    );
    Ok(())
}
