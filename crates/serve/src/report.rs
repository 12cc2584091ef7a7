//! `/report/`: the scorecards of `crmdq report`, rendered live from the committed
//! warehouse, behind the same credentials as the SQL endpoint and the JSON API.
//!
//! - `/report/` lists the scored periods; `/report/?period=P[&team=T]` redirects to the
//!   period's index (or the team's page).
//! - `/report/<period>/` is the index, `/report/<period>/<page>.html` any page of the
//!   static site, with the same relative links. `?lang=en|zh-CN` picks the language
//!   (default: the pipeline's `report.lang`) and is carried along every link.
//!
//! A period's model is read once per warehouse version and kept (the last few periods);
//! each page is rendered on request.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use crmdq_config::{Lang, Pipeline};
use crmdq_report::{Model, Page};
use crmdq_warehouse::LiveSnapshot;
use datafusion::prelude::SessionContext;
use serde::Deserialize;

/// Models kept, most recent first.
const CACHED: usize = 4;

#[derive(Clone)]
pub struct ReportState {
    pub p: Arc<Pipeline>,
    pub ctx: Arc<SessionContext>,
    pub live: Arc<LiveSnapshot>,
    cache: Arc<tokio::sync::Mutex<Cache>>,
}

/// (warehouse version, period, model), most recently used first.
type Cache = Vec<(u64, String, Arc<Model>)>;

impl ReportState {
    pub fn new(p: Arc<Pipeline>, ctx: Arc<SessionContext>, live: Arc<LiveSnapshot>) -> Self {
        ReportState {
            p,
            ctx,
            live,
            cache: Arc::default(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ReportQuery {
    pub period: Option<String>,
    pub team: Option<String>,
    pub lang: Option<String>,
}

/// The `/report/` routes (the caller adds the credentials layer).
pub fn router(state: ReportState) -> Router {
    Router::new()
        .route("/report", get(|| async { Redirect::permanent("/report/") }))
        .route("/report/", get(periods))
        .route("/report/{period}", get(period_root))
        .route("/report/{period}/", get(index))
        .route("/report/{period}/{file}", get(page))
        .with_state(state)
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A request that cannot be answered with a page: its status and why, as text.
struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

fn problem(code: StatusCode, msg: impl Into<String>) -> Problem {
    Problem(code, msg.into())
}

fn lang_of(s: &ReportState, q: &ReportQuery) -> Result<(Lang, String), Problem> {
    match q.lang.as_deref() {
        None => Ok((s.p.report.lang, String::new())),
        Some(x) => Lang::parse(x)
            .map(|l| (l, format!("?lang={}", l.tag())))
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    format!("lang `{x}`: use en or zh-CN"),
                )
            }),
    }
}

async fn model(s: &ReportState, period: &str) -> Result<Arc<Model>, Problem> {
    let snap = s
        .live
        .current()
        .await
        .map_err(|e| problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let mut cache = s.cache.lock().await;
    if let Some(at) = cache
        .iter()
        .position(|(v, p, _)| *v == snap.version && p == period)
    {
        let hit = cache.remove(at);
        let m = hit.2.clone();
        cache.insert(0, hit);
        return Ok(m);
    }
    let scope = crmdq_report::Scope {
        period: period.to_string(),
        team: None,
        now: jiff::Timestamp::now(),
    };
    let m = crmdq_report::load(&s.p, &s.ctx, &snap.kafka, snap.version, &scope)
        .await
        .map_err(|e| match e {
            crmdq_report::ReportError::Usage(m) => problem(StatusCode::NOT_FOUND, m),
            other => problem(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
    let m = Arc::new(m);
    cache.retain(|(v, _, _)| *v == snap.version);
    cache.insert(0, (snap.version, period.to_string(), m.clone()));
    cache.truncate(CACHED);
    Ok(m)
}

async fn render(s: &ReportState, period: &str, file: &str, q: &ReportQuery) -> Response {
    let (lang, suffix) = match lang_of(s, q) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let m = match model(s, period).await {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let Some(which) = crmdq_report::pages(&m)
        .into_iter()
        .find(|p| p.file() == file)
    else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no page `{file}` in {period}"),
        )
        .into_response();
    };
    match crmdq_report::render_page(
        &s.p,
        &m,
        lang,
        &suffix,
        Some(jiff::Timestamp::now()),
        &which,
    ) {
        Ok(body) => html(body),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/report/`: the scored periods, or a redirect when `period` is given.
async fn periods(State(s): State<ReportState>, Query(q): Query<ReportQuery>) -> Response {
    let (lang, suffix) = match lang_of(&s, &q) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    if let Some(period) = &q.period {
        if crmdq_report::model::period_kind(period).is_none() {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("period `{period}`: expected 2026-W45, 2026-11 or 2026-Q4"),
            )
            .into_response();
        }
        let file = q
            .team
            .as_deref()
            .map_or_else(String::new, |t| Page::Team(t.to_string()).file());
        return Redirect::to(&format!("/report/{period}/{file}{suffix}")).into_response();
    }
    match crmdq_report::periods_page(&s.ctx, lang, &suffix).await {
        Ok(body) => html(body),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn period_root(Path(period): Path<String>, Query(q): Query<ReportQuery>) -> Response {
    let suffix = q.lang.map(|l| format!("?lang={l}")).unwrap_or_default();
    Redirect::permanent(&format!("/report/{period}/{suffix}")).into_response()
}

async fn index(
    State(s): State<ReportState>,
    Path(period): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    render(&s, &period, crmdq_config::report::page::INDEX, &q).await
}

async fn page(
    State(s): State<ReportState>,
    Path((period, file)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Response {
    render(&s, &period, &file, &q).await
}
