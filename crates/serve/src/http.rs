//! The probe endpoints (axum): `/healthz`, `/readyz`, `/metrics`. `run --http-listen`
//! serves only these; `serve` adds the JSON API ([`crate::api`]). Neither module imports
//! the other: [`crate::Server`] composes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crmdq_warehouse::LiveSnapshot;
use datafusion::prelude::SessionContext;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crmdq_telemetry::{Metrics, RunHealth};

/// The newest committed event time (µs) as of a log version.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub version: u64,
    pub newest_event_us: Option<i64>,
}

/// Where `serve` computes `crmdq_freshness_seconds` from: its SQL session, with the last
/// result cached per log version. (`run` sets the gauge itself from what it commits.)
pub struct FreshnessSource {
    pub ctx: Arc<SessionContext>,
    pub cache: tokio::sync::Mutex<Option<Freshness>>,
}

/// State of the probe endpoints (`/healthz`, `/readyz`, `/metrics`), the part of the HTTP
/// surface both programs have.
#[derive(Clone)]
pub struct Probes {
    pub metrics: Arc<Metrics>,
    pub live: Arc<LiveSnapshot>,
    /// `run`: its consumer's readiness (partitions, broker, lag, warehouse writable,
    /// progress). `serve` is ready while the commit log is readable.
    pub run: Option<Arc<RunHealth>>,
    /// `serve`: freshness from its SQL session.
    pub freshness: Option<Arc<FreshnessSource>>,
}

/// `/healthz`, `/readyz` and `/metrics`: all `run --http-listen` serves, and the base of
/// `serve`'s router (which adds the JSON API, [`crate::api::router`]).
pub fn probes_router(state: Probes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serve `app` on `listener` until `cancel` fires.
pub async fn serve_http(listener: TcpListener, app: Router, cancel: CancellationToken) {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
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

async fn readyz(State(s): State<Probes>) -> Response {
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
    if let Some(r) = &s.run {
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

async fn metrics(State(s): State<Probes>) -> Response {
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
        if let Some(f) = &s.freshness {
            // serve: freshness from the newest committed event time, recomputed only
            // when the log moved.
            let mut cached = f.cache.lock().await;
            if cached.is_none_or(|c| c.version != snap.version) {
                *cached = Some(Freshness {
                    version: snap.version,
                    newest_event_us: newest_event_time(&f.ctx).await,
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
