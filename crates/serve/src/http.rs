//! The HTTP surface (axum): `/healthz`, `/readyz`, `/metrics`, and the JSON API under
//! `/api/v1` (see [`crate::api`] and `schemas/openapi.yaml`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use crmdq_warehouse::LiveSnapshot;
use datafusion::prelude::SessionContext;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pg::{Auth, LoginLimiter};
use crmdq_telemetry::{Metrics, RunHealth};

/// Readiness of the process: `serve` is ready while the commit log is readable; `run`
/// also needs partitions assigned, a broker reachable, lag under the bound and a
/// writable warehouse.
#[derive(Debug)]
pub struct Health {
    pub run: Option<Arc<RunHealth>>,
}

impl Health {
    pub fn serve() -> Health {
        Health { run: None }
    }

    pub fn run(h: Arc<RunHealth>) -> Health {
        Health { run: Some(h) }
    }
}

/// The newest committed event time (µs) as of a log version.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub version: u64,
    pub newest_event_us: Option<i64>,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub live: Arc<LiveSnapshot>,
    /// The SQL session (serve only): the JSON API and freshness need it.
    pub ctx: Option<Arc<SessionContext>>,
    pub auth: Auth,
    pub limiter: Arc<LoginLimiter>,
    /// The last freshness computation (serve).
    pub freshness: Arc<tokio::sync::Mutex<Option<Freshness>>>,
}

/// `/healthz`, `/readyz` and `/metrics`; with a SQL session (`serve`) also the JSON API.
/// `run --http-listen` has no session, so it mounts no API routes (they would only
/// answer errors there).
pub fn router(state: AppState) -> Router {
    let base = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let app = if state.ctx.is_some() {
        base.merge(crate::api::routes().layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        )))
    } else {
        base
    };
    app.with_state(state)
}

/// Serve HTTP on `listener` until `cancel` fires.
pub async fn serve_http(listener: TcpListener, state: AppState, cancel: CancellationToken) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut check = |name: &str, ok: bool, detail: serde_json::Value| {
        ready &= ok;
        checks.insert(name.to_string(), json!({"ok": ok, "detail": detail}));
    };
    match s.live.current().await {
        Ok(snap) => check(
            "warehouse_readable",
            true,
            json!({"log_version": snap.version}),
        ),
        Err(e) => check("warehouse_readable", false, json!(e.to_string())),
    }
    if let Some(r) = &s.health.run {
        let assigned = r.assigned.load(Ordering::Relaxed);
        check("consuming", assigned > 0, json!({"partitions": assigned}));
        let up = r.brokers_up.load(Ordering::Relaxed);
        let seen = r.stats_seen.load(Ordering::Relaxed);
        check(
            "broker_reachable",
            seen && up > 0,
            json!({"brokers_up": up, "statistics_received": seen}),
        );
        let lag = r.lag.load(Ordering::Relaxed);
        check(
            "lag_under_bound",
            lag <= r.max_lag,
            json!({"lag": lag, "bound": r.max_lag}),
        );
        let ok = r.warehouse_ok.load(Ordering::Relaxed);
        let err = r.warehouse_error.lock().ok().and_then(|e| e.clone());
        check("warehouse_writable", ok, json!(err));
        let stalled = r.stalled.lock().map(|s| s.clone()).unwrap_or_default();
        check(
            "partitions_progressing",
            stalled.is_empty(),
            json!({"stalled": stalled}),
        );
    }
    s.metrics.ready.set(i64::from(ready));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(json!({"ready": ready, "checks": checks}))).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    if let Ok(snap) = s.live.current().await {
        s.metrics.observe_warehouse(
            snap.version,
            snap.tables.iter().map(|(t, files)| {
                (
                    t.as_str(),
                    files.iter().map(|f| f.rows).sum::<u64>(),
                    files.len(),
                )
            }),
        );
        if let Some(ctx) = &s.ctx {
            // serve: freshness from the newest committed event time, recomputed only
            // when the log moved.
            let mut cached = s.freshness.lock().await;
            if cached.is_none_or(|f| f.version != snap.version) {
                *cached = Some(Freshness {
                    version: snap.version,
                    newest_event_us: newest_event_time(ctx).await,
                });
            }
            if let Some(Freshness {
                newest_event_us: Some(us),
                ..
            }) = *cached
            {
                let now = jiff::Timestamp::now().as_microsecond();
                s.metrics.freshness.set((now - us) as f64 / 1e6);
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn newest_event_time(ctx: &SessionContext) -> Option<i64> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampMicrosecondType;
    let batches = ctx
        .sql("SELECT max(event_time) FROM all_deliveries")
        .await
        .ok()?
        .collect()
        .await
        .ok()?;
    let col = batches.first()?.column(0).clone();
    let a = col.as_primitive::<TimestampMicrosecondType>();
    (a.len() == 1 && a.is_valid(0)).then(|| a.value(0))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HTTP Basic authentication with the SQL credentials on the JSON API (when credentials
/// are configured; trust mode is loopback-only). Failures count against the same
/// per-address budget as SQL logins.
async fn require_credentials(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Auth::Password { user, password } = &s.auth else {
        return next.run(req).await;
    };
    if s.limiter.blocked(peer.ip()) {
        tracing::warn!(client = %peer.ip(), "API request refused: too many failed logins");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again in a minute\n",
        )
            .into_response();
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{user}:{password}");
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => next.run(req).await,
        other => {
            if other.is_some() {
                let n = s.limiter.fail(peer.ip());
                tracing::warn!(client = %peer.ip(), failures_last_minute = n, "API login failed");
            }
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"crmdq\"")],
                "credentials required (the SQL user and password)\n",
            )
                .into_response()
        }
    }
}
