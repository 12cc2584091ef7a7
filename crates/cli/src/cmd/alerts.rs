//! `crmdq alerts`: evaluate the pipeline's alert rules for a business date and notify (and record)
//! what fires or resolves.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::{DeliverArg, UsageError, load, print_alerts};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    /// Business date YYYY-MM-DD (default: the latest scored date). A date before the
    /// latest one evaluated is a report: it changes no state and sends nothing.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub date: Option<String>,
    /// Replay a backfill: judge every business date from FROM to TO in order,
    /// firing, repeating and resolving as a daily job would have.
    #[arg(long, requires = "to", value_name = "D1")]
    pub from: Option<String>,
    #[arg(long, requires = "from", value_name = "D2")]
    pub to: Option<String>,
    /// Which events to deliver: `open` (the latest of each episode still firing at
    /// the end, and resolves of episodes open before) or `all`.
    #[arg(long, value_enum, default_value = "open")]
    pub deliver: DeliverArg,
    /// Print what would fire; send nothing, record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also POST every alert event (JSON) to this URL, pending ones included; it
    /// stands in for a route whose receiver is disabled.
    #[arg(long)]
    pub webhook: Option<String>,
    #[arg(long)]
    pub roster: Option<PathBuf>,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        date,
        from,
        to,
        deliver,
        dry_run,
        webhook,
        roster,
    } = a;
    let clock = shared_clock.as_ref();
    let p = load(&pipeline, warehouse.as_ref(), None)?;
    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let day = |flag: &str, d: &str| -> anyhow::Result<jiff::civil::Date> {
        d.parse()
            .map_err(|e| UsageError(format!("{flag} `{d}`: {e}")).into())
    };
    let dates = match (date, from, to) {
        (Some(d), _, _) => crmdq_alerts::Dates::On(day("--date", &d)?),
        (None, Some(a), Some(z)) => {
            let (a, z) = (day("--from", &a)?, day("--to", &z)?);
            if z < a {
                return Err(UsageError(format!("--to {z} is before --from {a}")).into());
            }
            crmdq_alerts::Dates::Range(a, z)
        }
        _ => crmdq_alerts::Dates::Latest,
    };
    if let Some(u) = &webhook
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(UsageError(format!("--webhook `{u}` is not an http(s) URL")).into());
    }
    let roster = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
    let opts = crmdq_alerts::EvalOptions {
        dates,
        dry_run,
        deliver: match deliver {
            DeliverArg::Open => crmdq_alerts::Deliver::Open,
            DeliverArg::All => crmdq_alerts::Deliver::All,
        },
        extra_webhook: webhook,
        ..crmdq_alerts::EvalOptions::latest(clock.now())
    };
    let r = crmdq_alerts::evaluate(&p, &w, roster.as_deref(), &opts).await?;
    print_alerts(&r, dry_run, p.alerts.rules.len());
    Ok(())
}
