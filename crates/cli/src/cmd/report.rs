//! `crmdq report`: the scorecards of a review period as HTML pages or an XLSX workbook.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::{UsageError, load};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Html,
    Xlsx,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    #[arg(long)]
    pub roster: Option<PathBuf>,
    /// The review period: a week (`2026-W45`), a month (`2026-11`) or a quarter
    /// (`2026-Q4`). Default: the latest scored month.
    #[arg(long)]
    pub period: Option<String>,
    /// Only this team (its page, its people, the pipeline page).
    #[arg(long)]
    pub team: Option<String>,
    /// Folder the pages (or the workbook) are written to. Default `report-<period>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `en` or `zh-CN`. Default: the pipeline's `report.lang`, else `en`.
    #[arg(long)]
    pub lang: Option<String>,
    #[arg(long, value_enum, default_value = "html")]
    pub format: FormatArg,
}

pub async fn run(a: Args, clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let p = load(&a.pipeline, a.warehouse.as_ref(), None)?;
    let lang = match &a.lang {
        None => p.report.lang,
        Some(s) => crmdq_config::Lang::parse(s)
            .ok_or_else(|| UsageError(format!("--lang `{s}`: use `en` or `zh-CN`")))?,
    };
    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let roster = a.roster.or_else(|| p.roster_path().map(Path::to_path_buf));
    let period = if let Some(x) = a.period {
        x
    } else {
        let (ctx, _) = crmdq_report::session(&p, &w, roster.as_deref()).await?;
        crmdq_report::latest_period(&ctx, "month")
            .await?
            .ok_or_else(|| {
                UsageError("no scored month in this warehouse: run `crmdq score` first".into())
            })?
    };
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("report-{period}")));
    let scope = crmdq_report::Scope {
        period,
        team: a.team,
        now: clock.now(),
    };
    let format = match a.format {
        FormatArg::Html => crmdq_report::Format::Html,
        FormatArg::Xlsx => crmdq_report::Format::Xlsx,
    };
    let o = crmdq_report::report(&p, &w, roster.as_deref(), &scope, lang, format, &out)
        .await
        .map_err(|e| match e {
            crmdq_report::ReportError::Usage(m) => anyhow::Error::new(UsageError(m)),
            other => anyhow::Error::new(other),
        })?;
    match format {
        crmdq_report::Format::Html => println!(
            "report for {}: {} page(s), {} KB (largest page {} KB) in {}\nopen {}",
            o.period,
            o.pages,
            o.bytes / 1024,
            o.largest / 1024,
            out.display(),
            o.path.display()
        ),
        crmdq_report::Format::Xlsx => println!(
            "report for {}: workbook {} ({} KB)",
            o.period,
            o.path.display(),
            o.bytes / 1024
        ),
    }
    Ok(())
}
