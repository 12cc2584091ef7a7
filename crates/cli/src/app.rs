//! `crmdq run` as a value (roapi's startup shape): [`RunApp::build`] opens the warehouse
//! and binds the optional HTTP listener (port 0 gives a free port, read back with
//! [`RunApp::http_addr`]); [`RunApp::run_until_stopped`] consumes until cancelled or
//! caught up, serving `/healthz`, `/readyz` and `/metrics` meanwhile. `crmdq serve` has
//! its own value, [`crmdq_serve::Server`]. The binary builds one and runs it; tests start
//! the real thing the same way.

use std::net::SocketAddr;
use std::sync::Arc;

use crmdq_config::Pipeline;
use crmdq_pipeline::Clock;
use crmdq_pipeline::run::{RunOptions, RunSummary, Telemetry};
use crmdq_telemetry::{Metrics, RunHealth};
use crmdq_warehouse::{LiveSnapshot, Warehouse};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The consumer, ready to run.
pub struct RunApp {
    p: Pipeline,
    w: Warehouse,
    opts: RunOptions,
    http: Option<(TcpListener, crmdq_serve::http::Probes)>,
}

impl RunApp {
    /// Open the warehouse and bind `http_listen` (if given). `brokers` overrides the
    /// pipeline's bootstrap servers; `until_caught_up` stops at the end offsets seen at
    /// start.
    pub async fn build(
        p: Pipeline,
        brokers: Option<String>,
        until_caught_up: bool,
        http_listen: Option<SocketAddr>,
    ) -> anyhow::Result<RunApp> {
        let w = Warehouse::connect(&p.warehouse.location()).await?;
        let telemetry = Telemetry {
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(RunHealth::new(p.serve.ready_max_lag)),
        };
        let http = match http_listen {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                let probes = crmdq_serve::http::Probes {
                    metrics: telemetry.metrics.clone(),
                    live: LiveSnapshot::open(w.clone()).await?,
                    run: Some(telemetry.health.clone()),
                    freshness: None,
                };
                Some((listener, probes))
            }
        };
        Ok(RunApp {
            p,
            w,
            opts: RunOptions {
                brokers,
                until_caught_up,
                telemetry: Some(telemetry),
            },
            http,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` answer, if asked for.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Consume until `cancel` fires (or the run is caught up), then stop the HTTP server.
    pub async fn run_until_stopped(
        self,
        clock: &dyn Clock,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunSummary> {
        let tasks = tokio_util::task::TaskTracker::new();
        let http_stop = CancellationToken::new();
        if let Some((listener, probes)) = self.http {
            tasks.spawn(crmdq_serve::http::serve_http(
                listener,
                crmdq_serve::http::probes_router(probes),
                http_stop.clone(),
            ));
        }
        let s = crmdq_pipeline::run::run(&self.p, &self.w, &self.opts, clock, cancel).await;
        http_stop.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(s?)
    }
}
