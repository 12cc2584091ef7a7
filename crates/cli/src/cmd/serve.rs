//! `crmdq serve`: postgreSQL-protocol SQL endpoint (database `crmdq`) and HTTP /healthz, /readyz,
//! /metrics and the JSON API, over the committed warehouse, until SIGINT/SIGTERM.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::{UsageError, addr, load, shutdown_signal};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    /// SQL endpoint address (default: the pipeline's serve.pg_listen, 127.0.0.1:5433).
    #[arg(long, value_name = "ADDR")]
    pub pg_listen: Option<String>,
    /// HTTP address (default: the pipeline's serve.http_listen, 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    #[arg(long)]
    pub roster: Option<PathBuf>,
}

pub async fn run(a: Args, _shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        pg_listen,
        http_listen,
        roster,
    } = a;
    let p = load(&pipeline, warehouse.as_ref(), None)?;
    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let opts = crmdq_serve::ServeOptions {
        pg_listen: match pg_listen {
            Some(a) => addr(&a, "--pg-listen")?,
            None => p.serve.pg_listen,
        },
        http_listen: match http_listen {
            Some(a) => addr(&a, "--http-listen")?,
            None => p.serve.http_listen,
        },
        roster: roster.or_else(|| p.roster_path().map(Path::to_path_buf)),
    };
    let root = w.location().clone();
    let server = match crmdq_serve::Server::build(&p, w, &opts).await {
        Err(crmdq_serve::ServeError::Usage(m)) => return Err(UsageError(m).into()),
        r => r?,
    };
    println!(
        "serving {}: SQL on postgresql://{}/{}, HTTP on http://{} (/healthz, /readyz, /metrics, /api/v1)",
        root,
        server.pg_addr(),
        crmdq_serve::pg::DATABASE,
        server.http_addr()
    );
    let token = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let signal = tasks.spawn(shutdown_signal(token.clone()));
    server.run_until_stopped(token).await;
    signal.abort();
    tasks.close();
    tasks.wait().await;
    Ok(())
}
