//! The JSON API (`/api/v1`), documented in `schemas/openapi.yaml`. Every endpoint is a
//! parameterised SQL query over the same live session the SQL endpoint serves, so the
//! numbers are the warehouse's, to the record.

use std::sync::Arc;

use arrow::array::RecordBatch;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use serde_json::{Value, json};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use base64::Engine as _;

use crate::pg::{Auth, LoginLimiter};

/// State of the JSON API: the SQL session, and the SQL endpoint's credentials and login
/// budget (the API is guarded by the same ones).
#[derive(Clone)]
pub struct AppState {
    pub ctx: Arc<SessionContext>,
    pub auth: Auth,
    pub limiter: Arc<LoginLimiter>,
}

/// Most rows one page returns.
pub const MAX_LIMIT: u64 = 1000;
const DEFAULT_LIMIT: u64 = 100;

/// Every path the HTTP server answers (the OpenAPI file documents exactly these).
pub const PATHS: [&str; 10] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/dates",
    "/api/v1/teams",
    "/api/v1/people",
    "/api/v1/people/{person_id}/rules",
    "/api/v1/people/{person_id}/failing",
    "/api/v1/review/people",
    "/api/v1/review/teams",
];

/// The JSON API behind HTTP Basic authentication (when credentials are set).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/dates", get(dates))
        .route("/api/v1/teams", get(teams))
        .route("/api/v1/people", get(people))
        .route("/api/v1/people/{person_id}/rules", get(person_rules))
        .route("/api/v1/people/{person_id}/failing", get(person_failing))
        .route("/api/v1/review/people", get(review_people))
        .route("/api/v1/review/teams", get(review_teams))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ))
        .with_state(state)
}

/// Query parameters shared by the list endpoints.
#[derive(Debug, Deserialize, Default)]
pub struct Range {
    /// First business date (inclusive, `YYYY-MM-DD`); default: the latest scored date.
    pub from: Option<String>,
    /// Last business date (inclusive); default: `from`.
    pub to: Option<String>,
    /// Only this team.
    pub team_id: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// Query parameters of the review endpoints.
#[derive(Debug, Deserialize, Default)]
pub struct PeriodQuery {
    /// `week`, `month` (default) or `quarter`.
    pub period_kind: Option<String>,
    /// `2026-W45`, `2026-11`, `2026-Q4`; default: the latest period of that kind.
    pub period: Option<String>,
    pub team_id: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DayPage {
    /// Business date (`YYYY-MM-DD`); default: the latest date with entries of this person.
    pub date: Option<String>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "API query failed");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn date(v: &str, name: &str) -> Result<String, ApiError> {
    v.parse::<jiff::civil::Date>()
        .map(|d| d.to_string())
        .map_err(|_| bad(format!("`{name}` must be a date YYYY-MM-DD, not `{v}`")))
}

fn page(limit: Option<u64>, offset: Option<u64>) -> Result<(u64, u64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(format!("`limit` must be 1..={MAX_LIMIT}")));
    }
    Ok((limit, offset.unwrap_or(0)))
}

/// Run `sql` with positional parameters `$1…` and return the rows as JSON objects.
async fn rows(
    ctx: &SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Result<Vec<Value>, ApiError> {
    let df = ctx
        .sql(sql)
        .await
        .map_err(internal)?
        .with_param_values(params)
        .map_err(internal)?;
    let batches = df.collect().await.map_err(internal)?;
    to_json(&batches).map_err(internal)
}

fn to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, arrow::error::ArrowError> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))?;
    Ok(match v {
        Value::Array(a) => a,
        other => vec![other],
    })
}

async fn latest(ctx: &SessionContext, table: &str) -> Result<Option<String>, ApiError> {
    let v = rows(ctx, &format!("SELECT max(dt) AS d FROM {table}"), vec![]).await?;
    Ok(v.first()
        .and_then(|r| r.get("d"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Resolve (from, to): explicit dates, else the latest scored date of `table`.
async fn range(
    ctx: &SessionContext,
    table: &str,
    r: &Range,
) -> Result<Option<(String, String)>, ApiError> {
    let from = match &r.from {
        Some(f) => Some(date(f, "from")?),
        None => latest(ctx, table).await?,
    };
    let Some(from) = from else { return Ok(None) };
    let to = match &r.to {
        Some(t) => date(t, "to")?,
        None => from.clone(),
    };
    if to < from {
        return Err(bad("`to` is before `from`"));
    }
    Ok(Some((from, to)))
}

fn s(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}

fn envelope(items: Vec<Value>, limit: u64, offset: u64, extra: Value) -> Value {
    let more = items.len() as u64 > limit;
    let items: Vec<Value> = items.into_iter().take(limit as usize).collect();
    let mut out = json!({
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": if more { Some(offset + limit) } else { None },
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
        o.extend(e);
    }
    out
}

/// `GET /api/v1/dates`: the scored business dates, newest first.
async fn dates(State(st): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let ctx = &st.ctx;
    let v = rows(
        ctx,
        "SELECT dt, CAST(SUM(entries) AS BIGINT) AS entries FROM team_daily GROUP BY dt ORDER BY dt DESC",
        vec![],
    )
    .await?;
    Ok(axum::Json(json!({ "items": v })))
}

async fn scored(
    st: &AppState,
    table: &str,
    order: &str,
    q: &Range,
) -> Result<axum::Json<Value>, ApiError> {
    let ctx = &st.ctx;
    let (limit, offset) = page(q.limit, q.offset)?;
    let Some((from, to)) = range(ctx, table, q).await? else {
        return Ok(axum::Json(envelope(vec![], limit, offset, json!({}))));
    };
    table_page(
        ctx,
        (table, "dt >= $1 AND dt <= $2", order),
        vec![s(&from), s(&to)],
        q.team_id.as_ref(),
        (limit, offset),
        json!({"from": from, "to": to}),
    )
    .await
}

/// One page of `table`'s rows where `cond` (over `params`) holds, of one team if given,
/// in `order`; `extra` is answered alongside the page.
async fn table_page(
    ctx: &SessionContext,
    (table, cond, order): (&str, &str, &str),
    mut params: Vec<ScalarValue>,
    team: Option<&String>,
    (limit, offset): (u64, u64),
    extra: Value,
) -> Result<axum::Json<Value>, ApiError> {
    let mut filter = String::new();
    if let Some(t) = team {
        params.push(s(t));
        filter = format!(" AND team_id = ${}", params.len());
    }
    let sql = format!(
        "SELECT * FROM {table} WHERE {cond}{filter} ORDER BY {order} LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let items = rows(ctx, &sql, params).await?;
    Ok(axum::Json(envelope(items, limit, offset, extra)))
}

/// `GET /api/v1/teams?from&to&team_id&limit&offset`.
async fn teams(
    State(st): State<AppState>,
    Query(q): Query<Range>,
) -> Result<axum::Json<Value>, ApiError> {
    scored(&st, "team_daily", "dt, team_id", &q).await
}

/// `GET /api/v1/people?from&to&team_id&limit&offset`.
async fn people(
    State(st): State<AppState>,
    Query(q): Query<Range>,
) -> Result<axum::Json<Value>, ApiError> {
    scored(&st, "person_daily", "dt, person_id, role", &q).await
}

async fn review(
    st: &AppState,
    table: &str,
    order: &str,
    q: &PeriodQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let ctx = &st.ctx;
    let (limit, offset) = page(q.limit, q.offset)?;
    let kind = q.period_kind.as_deref().unwrap_or("month");
    if !["week", "month", "quarter"].contains(&kind) {
        return Err(bad(format!(
            "`period_kind` must be week, month or quarter, not `{kind}`"
        )));
    }
    let period = match &q.period {
        Some(p) => Some(p.clone()),
        None => rows(
            ctx,
            &format!("SELECT max(period) AS p FROM {table} WHERE period_kind = $1"),
            vec![s(kind)],
        )
        .await?
        .first()
        .and_then(|r| r.get("p"))
        .and_then(Value::as_str)
        .map(str::to_string),
    };
    let Some(period) = period else {
        return Ok(axum::Json(envelope(vec![], limit, offset, json!({}))));
    };
    table_page(
        ctx,
        (table, "period_kind = $1 AND period = $2", order),
        vec![s(kind), s(&period)],
        q.team_id.as_ref(),
        (limit, offset),
        json!({"period_kind": kind, "period": period}),
    )
    .await
}

/// `GET /api/v1/review/people?period_kind&period&team_id&limit&offset`: the period's
/// `person_period` rows, judged people by rank within team and role first.
async fn review_people(
    State(st): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    review(
        &st,
        "person_period",
        "team_id, role, judged DESC, rank_in_team, person_id",
        &q,
    )
    .await
}

/// `GET /api/v1/review/teams?period_kind&period&team_id&limit&offset`: the period's
/// `team_period` rows.
async fn review_teams(
    State(st): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    review(&st, "team_period", "team_id", &q).await
}

/// `GET /api/v1/people/{person_id}/rules?from&to`: which rules cost the person how many
/// entries, per day.
async fn person_rules(
    State(st): State<AppState>,
    Path(person): Path<String>,
    Query(q): Query<Range>,
) -> Result<axum::Json<Value>, ApiError> {
    let ctx = &st.ctx;
    let (limit, offset) = page(q.limit, q.offset)?;
    let Some((from, to)) = range(ctx, "rule_daily", &q).await? else {
        return Ok(axum::Json(envelope(vec![], limit, offset, json!({}))));
    };
    let sql = format!(
        "SELECT dt, rule, entries FROM rule_daily WHERE person_id = $1 AND dt >= $2 AND dt <= $3 \
         ORDER BY dt, entries DESC, rule LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let items = rows(ctx, &sql, vec![s(&person), s(&from), s(&to)]).await?;
    Ok(axum::Json(envelope(
        items,
        limit,
        offset,
        json!({"person_id": person, "from": from, "to": to}),
    )))
}

/// `GET /api/v1/people/{person_id}/failing?date&limit&offset`: the person's entries of
/// one business date that failed something, with ids, reasons and source positions.
async fn person_failing(
    State(st): State<AppState>,
    Path(person): Path<String>,
    Query(q): Query<DayPage>,
) -> Result<axum::Json<Value>, ApiError> {
    let ctx = &st.ctx;
    let (limit, offset) = page(q.limit, q.offset)?;
    let day = match &q.date {
        Some(d) => Some(date(d, "date")?),
        None => rows(
            ctx,
            "SELECT max(dt) AS d FROM entries WHERE entered_by = $1",
            vec![s(&person)],
        )
        .await?
        .first()
        .and_then(|r| r.get("d"))
        .and_then(Value::as_str)
        .map(str::to_string),
    };
    let Some(day) = day else {
        return Ok(axum::Json(envelope(
            vec![],
            limit,
            offset,
            json!({"person_id": person}),
        )));
    };
    let sql = format!(
        "SELECT record_type, record_id, version, reasons, dq_missing_fields, dq_failed_checks, \
           dq_on_time, dq_late_seconds, src_topic, src_partition, src_offset, src_file, src_line \
         FROM failing_records WHERE person_id = $1 AND dt = $2 \
         ORDER BY record_type, record_id, version LIMIT {} OFFSET {offset}",
        limit + 1
    );
    let items = rows(ctx, &sql, vec![s(&person), s(&day)]).await?;
    Ok(axum::Json(envelope(
        items,
        limit,
        offset,
        json!({"person_id": person, "date": day}),
    )))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HTTP Basic authentication with the SQL credentials on the JSON API (when credentials
/// are configured; trust mode is loopback-only). Failures count against the same
/// per-address budget as SQL logins.
pub(crate) async fn require_credentials(
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
