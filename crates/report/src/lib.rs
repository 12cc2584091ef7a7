//! The scorecards people read (contract section 7, `crmdq report`; `serve`'s
//! `/report/`): for one review period, a small static site — an index, one page per
//! team, one per person, one for the pipeline's health — in English or Simplified
//! Chinese, or one XLSX workbook for HR.
//!
//! Read the model once ([`model::load`]: a handful of queries for every team and person),
//! then render each page from it ([`html`], [`xlsx`]). Every number on a page is a cell
//! of `person_period`/`team_period` written by [`fmt::Fmt`] and tagged with where it came
//! from, so a test (or a doubting reader) can trace it back.

pub mod fmt;
pub mod html;
pub mod labels;
pub mod model;
pub mod svg;
pub mod view;
pub mod xlsx;

use std::path::{Path, PathBuf};

use crmdq_config::{Lang, Pipeline};

pub use html::{Page, pages, periods_page, render_page};
pub use model::{Model, Scope, load};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A bad `--period` or `--team` (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("query failed: {message}\n  in: {sql}")]
    Query { sql: String, message: String },
    #[error("{0}")]
    Other(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ReportError {
    pub(crate) fn query(sql: &str, e: impl std::fmt::Display) -> ReportError {
        ReportError::Query {
            sql: sql.chars().take(300).collect(),
            message: e.to_string(),
        }
    }
}

/// What [`write_html`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub index: PathBuf,
    pub pages: usize,
    pub bytes: u64,
    /// The largest page, in bytes.
    pub largest: u64,
}

/// Render every page of `m` in `lang` into `dir` (created if missing).
pub fn write_html(p: &Pipeline, m: &Model, lang: Lang, dir: &Path) -> Result<Written, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let c = view::Ctx::new(p, m, lang, "");
    let list = pages(m);
    // Pages are independent: render them on every core.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    let chunk = list.len().div_ceil(threads).max(1);
    let results: Vec<Result<(u64, u64), ReportError>> = std::thread::scope(|s| {
        let handles: Vec<_> = list
            .chunks(chunk)
            .map(|part| {
                let c = &c;
                s.spawn(move || -> Result<(u64, u64), ReportError> {
                    let (mut bytes, mut largest) = (0u64, 0u64);
                    for pg in part {
                        let html = html::render_with(c, pg)?;
                        let path = dir.join(pg.file());
                        std::fs::write(&path, html.as_bytes())
                            .map_err(|source| ReportError::Write { path, source })?;
                        let n = html.len() as u64;
                        bytes += n;
                        largest = largest.max(n);
                    }
                    Ok((bytes, largest))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ReportError::Other("a render thread panicked".into())))
            })
            .collect()
    });
    let (mut bytes, mut largest) = (0, 0);
    for r in results {
        let (b, l) = r?;
        bytes += b;
        largest = largest.max(l);
    }
    Ok(Written {
        index: dir.join(crmdq_config::report::page::INDEX),
        pages: list.len(),
        bytes,
        largest,
    })
}

/// What `crmdq report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Xlsx,
}

/// What [`report`] wrote.
#[derive(Debug, Clone)]
pub struct Output {
    /// The index page (HTML) or the workbook (XLSX).
    pub path: PathBuf,
    pub pages: usize,
    pub bytes: u64,
    pub largest: u64,
    pub period: String,
}

/// A session over the warehouse as committed now, with the snapshot it reads (for the
/// Kafka positions and the version the pages name).
pub async fn session(
    p: &Pipeline,
    w: &crmdq_warehouse::Warehouse,
    roster: Option<&Path>,
) -> Result<
    (
        datafusion::prelude::SessionContext,
        crmdq_warehouse::Snapshot,
    ),
    ReportError,
> {
    let other = |e: &dyn std::fmt::Display| ReportError::Other(e.to_string());
    let roster = crmdq_catalog::roster::load_for_pipeline(p, roster)
        .await
        .map_err(|e| other(&e))?;
    let snap = w.snapshot().await.map_err(|e| other(&e))?;
    let ctx = crmdq_catalog::session();
    crmdq_catalog::register_snapshot(&ctx, w, &snap, roster).map_err(|e| other(&e))?;
    crmdq_catalog::create_views(&ctx, crmdq_catalog::all_views())
        .await
        .map_err(|e| other(&e))?;
    Ok((ctx, snap))
}

/// The latest scored period of a kind (`month` …), if any: what a report shows when no
/// period is named.
pub async fn latest_period(
    ctx: &datafusion::prelude::SessionContext,
    kind: &str,
) -> Result<Option<String>, ReportError> {
    let sql = format!(
        "SELECT period FROM person_period WHERE period_kind = '{}' \
         ORDER BY period_start DESC LIMIT 1",
        kind.replace('\'', "''")
    );
    let b = ctx
        .sql(&sql)
        .await
        .map_err(|e| ReportError::query(&sql, e))?
        .collect()
        .await
        .map_err(|e| ReportError::query(&sql, e))?;
    Ok(model::rows(&b)
        .first()
        .and_then(|r| r.text("period").map(str::to_string)))
}

/// `crmdq report`: the period's pages (into `out`) or workbook (`out/crmdq-<period>.xlsx`).
pub async fn report(
    p: &Pipeline,
    w: &crmdq_warehouse::Warehouse,
    roster: Option<&Path>,
    scope: &Scope,
    lang: Lang,
    format: Format,
    out: &Path,
) -> Result<Output, ReportError> {
    let (ctx, snap) = session(p, w, roster).await?;
    let m = load(p, &ctx, &snap.kafka, snap.version, scope).await?;
    match format {
        Format::Html => {
            let wr = write_html(p, &m, lang, out)?;
            Ok(Output {
                path: wr.index,
                pages: wr.pages,
                bytes: wr.bytes,
                largest: wr.largest,
                period: m.period.label,
            })
        }
        Format::Xlsx => {
            let bytes = xlsx::workbook(&m, lang)?;
            std::fs::create_dir_all(out).map_err(|source| ReportError::Write {
                path: out.to_path_buf(),
                source,
            })?;
            let team = scope
                .team
                .as_deref()
                .map(|t| format!("-{}", crmdq_config::report::slug(t)))
                .unwrap_or_default();
            let path = out.join(format!("crmdq-{}{team}.xlsx", m.period.label));
            std::fs::write(&path, &bytes).map_err(|source| ReportError::Write {
                path: path.clone(),
                source,
            })?;
            let n = bytes.len() as u64;
            Ok(Output {
                path,
                pages: 1,
                bytes: n,
                largest: n,
                period: m.period.label,
            })
        }
    }
}
