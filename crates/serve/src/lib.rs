//! crmdq-serve: the warehouse for BI tools and ops.
//!
//! - [`pg`]: a PostgreSQL wire-protocol SQL endpoint (database `crmdq`) over every table
//!   and the reading views ([`crmdq_catalog::views`]), read-only, password-authenticated.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` (Prometheus/OpenMetrics text) and the
//!   JSON API ([`api`], documented in `schemas/openapi.yaml`).
//! - [`metrics`]: the process's metrics, also updated by `crmdq run`.
//!
//! Every table takes its file list from the commit log at each query
//! ([`crmdq_warehouse::LiveTable`]), so commits made while the server runs are visible
//! to the next query; files not in the log are never read.

pub mod api;
pub mod http;
pub mod pg;
pub mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmdq_config::{Pipeline, ServeConfig};
use crmdq_warehouse::{LiveSnapshot, Warehouse, WarehouseError};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crmdq_telemetry::{CommitCounts, Metrics, RunHealth};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration or usage (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Catalog(#[from] crmdq_catalog::CatalogError),
    #[error("setting up the SQL session: {0}")]
    Session(#[from] DataFusionError),
}

/// Where `serve` listens (the pipeline's `serve` section, overridden by flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub roster: Option<PathBuf>,
}

/// The read-only SQL session over the warehouse: every table by name, the scoring
/// `entries` pool and the serving views, plus `pg_catalog`/`information_schema` for
/// clients that browse. The default catalog is the database name, `crmdq`.
pub async fn warehouse_session(
    p: &Pipeline,
    live: &Arc<LiveSnapshot>,
    roster: Option<&Path>,
) -> Result<SessionContext, ServeError> {
    let cfg =
        crmdq_catalog::session_config().with_default_catalog_and_schema(pg::DATABASE, "public");
    let ctx = SessionContext::new_with_config(cfg);
    let roster = crmdq_catalog::roster::load_for_pipeline(p, roster).await?;
    crmdq_catalog::register_live(&ctx, live, roster)?;
    crmdq_catalog::create_views(&ctx, crmdq_catalog::all_views()).await?;
    setup_pg_catalog(&ctx, pg::DATABASE, EmptyContextProvider).map_err(|e| *e)?;
    Ok(ctx)
}

/// Which credentials guard the SQL endpoint and the JSON API, after the security rules:
/// a non-loopback bind needs credentials; without credentials, `serve.trust: true` is the
/// only way to accept clients, and only on loopback.
pub fn auth_for(cfg: &ServeConfig, binds: &[SocketAddr]) -> Result<pg::Auth, ServeError> {
    match (&cfg.user, &cfg.password) {
        (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
            Ok(pg::Auth::Password {
                user: user.clone(),
                password: password.clone(),
            })
        }
        (Some(_), None) | (None, Some(_)) => Err(ServeError::Usage(
            "set both CRMDQ_SQL_USER and CRMDQ_SQL_PASSWORD (or sql.user and sql.password in the pipeline file)"
                .into(),
        )),
        _ => {
            if let Some(a) = binds.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ServeError::Usage(format!(
                    "{a} is not a loopback address: set CRMDQ_SQL_USER and CRMDQ_SQL_PASSWORD (or sql.user/sql.password) before binding it"
                )));
            }
            if cfg.trust {
                tracing::warn!("SQL endpoint in trust mode: any local client connects without a password");
                Ok(pg::Auth::Trust)
            } else {
                Err(ServeError::Usage(
                    "no SQL credentials: set CRMDQ_SQL_USER and CRMDQ_SQL_PASSWORD (or sql.user/sql.password in the pipeline file); `serve: {trust: true}` accepts local clients without a password"
                        .into(),
                ))
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// `crmdq serve` as a value (roapi's shape): [`Server::build`] validates, opens the
/// session and binds both listeners (port 0 gives free ports, read back with
/// [`Server::pg_addr`] and [`Server::http_addr`]); [`Server::run_until_stopped`] serves
/// until cancelled. Tests start the real thing this way.
pub struct Server {
    pg_listener: TcpListener,
    http_listener: TcpListener,
    pg_addr: SocketAddr,
    http_addr: SocketAddr,
    handlers: Arc<pg::Handlers>,
    tls: Option<pg::TlsAcceptor>,
    max_connections: usize,
    app: axum::Router,
}

impl Server {
    pub async fn build(
        p: &Pipeline,
        w: Warehouse,
        opts: &ServeOptions,
    ) -> Result<Server, ServeError> {
        let auth = auth_for(&p.serve, &[opts.pg_listen, opts.http_listen])?;
        let tls = match &p.serve.tls {
            Some((cert, key)) => Some(pg::tls_acceptor(cert, key)?),
            None => None,
        };
        let live = LiveSnapshot::open(w).await?;
        let ctx = Arc::new(warehouse_session(p, &live, opts.roster.as_deref()).await?);
        let limiter = Arc::new(pg::LoginLimiter::new(p.serve.max_failed_logins));
        let handlers = Arc::new(pg::Handlers::new(
            ctx.clone(),
            auth.clone(),
            limiter.clone(),
        ));
        let pg_listener = bind(opts.pg_listen).await?;
        let http_listener = bind(opts.http_listen).await?;
        let pg_addr = pg_listener.local_addr().unwrap_or(opts.pg_listen);
        let http_addr = http_listener.local_addr().unwrap_or(opts.http_listen);
        let probes = http::Probes {
            metrics: Arc::new(Metrics::new()),
            live,
            run: None,
            freshness: Some(Arc::new(http::FreshnessSource {
                ctx: ctx.clone(),
                cache: tokio::sync::Mutex::default(),
            })),
        };
        let api_state = api::AppState { ctx, auth, limiter };
        let reports = report::router(report::ReportState::new(
            Arc::new(p.clone()),
            api_state.ctx.clone(),
            probes.live.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            api_state.clone(),
            api::require_credentials,
        ));
        let app = http::probes_router(probes)
            .merge(api::router(api_state))
            .merge(reports);
        Ok(Server {
            pg_listener,
            http_listener,
            pg_addr,
            http_addr,
            handlers,
            tls,
            max_connections: p.serve.max_connections,
            app,
        })
    }

    /// The SQL endpoint's bound address.
    pub fn pg_addr(&self) -> SocketAddr {
        self.pg_addr
    }

    /// The HTTP server's bound address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serve SQL and HTTP until `cancel` fires.
    pub async fn run_until_stopped(self, cancel: CancellationToken) {
        tracing::info!(
            sql = %self.pg_addr,
            http = %self.http_addr,
            tls = self.tls.is_some(),
            database = pg::DATABASE,
            "serving the warehouse"
        );
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(pg::accept_loop(
            self.pg_listener,
            self.handlers,
            self.tls,
            self.max_connections,
            cancel.clone(),
        ));
        http::serve_http(self.http_listener, self.app, cancel).await;
        tasks.close();
        tasks.wait().await;
    }
}
