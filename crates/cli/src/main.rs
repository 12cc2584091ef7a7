//! `crmdq`: the thin command line over crmdq-pipeline. Parses arguments, sets up logging
//! and the clock, maps errors to the contract's exit codes (0 ok, 2 usage or config, 1
//! anything else). All behaviour lives in the library crates.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::RecordBatch;
use clap::{Parser, Subcommand, ValueEnum};
use crmdq_config::Pipeline;
use crmdq_pipeline::{Clock, FixedClock, SystemClock};
use crmdq_warehouse::Warehouse;

/// jemalloc rather than glibc's malloc: `score` works through a warehouse a chunk of dates
/// at a time from several threads, and glibc's per-thread arenas kept what each chunk
/// freed (RSS on 10M entries grew from 350 MiB to 1.1 GB over 25 chunks of the same size;
/// with two arenas it stayed near 400 MiB).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `println!` that ends the process quietly when stdout is closed (`crmdq … | head`)
/// instead of panicking; other write errors are reported on stderr.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("crmdq: writing to stdout: {e}");
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "crmdq",
    version,
    about = "Data-quality ingestion for CRM records: check, warehouse, score."
)]
struct Cli {
    /// Use this instant as "now" (RFC 3339) instead of the system clock: reproducible runs.
    #[arg(long, global = true, value_name = "INSTANT")]
    now: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on this machine: mock Kafka, synthetic stream, ingest, score, scoreboard.
    Demo {
        /// Folder for the demo's pipeline, roster and warehouse.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 14)]
        days: u32,
        #[arg(long, default_value_t = 12)]
        people: u32,
    },
    /// Backfill from NDJSON or CSV files (optionally gzipped). Re-ingesting a file adds nothing.
    Ingest {
        #[arg(long)]
        pipeline: PathBuf,
        #[arg(long)]
        warehouse: Option<PathBuf>,
        #[arg(long)]
        roster: Option<PathBuf>,
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Consume Kafka as the pipeline says until SIGINT/SIGTERM.
    Run {
        #[arg(long)]
        pipeline: PathBuf,
        #[arg(long)]
        warehouse: Option<PathBuf>,
        #[arg(long)]
        brokers: Option<String>,
        #[arg(long)]
        roster: Option<PathBuf>,
        /// Stop after reaching the end offsets seen at start.
        #[arg(long)]
        until_caught_up: bool,
        /// Serve /healthz, /readyz and /metrics on this address while running.
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<String>,
    },
    /// (Re)compute the score tables.
    Score {
        #[arg(long)]
        pipeline: PathBuf,
        #[arg(long)]
        warehouse: Option<PathBuf>,
        #[arg(long)]
        roster: Option<PathBuf>,
        /// Deliveries scored at once (consecutive dates up to this many; a date with
        /// more is scored alone). Memory follows it; the scores do not.
        #[arg(long, default_value_t = crmdq_score::DEFAULT_CHUNK_ROWS, value_parser = clap::value_parser!(u64).range(1..))]
        chunk_rows: u64,
        /// Do not evaluate the alert rules after scoring (e.g. to replay a backfill's
        /// alerts with `crmdq alerts --from D1 --to D2` instead).
        #[arg(long)]
        no_alerts: bool,
    },
    /// Query the warehouse tables by name (read-only).
    Sql {
        #[arg(long)]
        warehouse: PathBuf,
        #[arg(long)]
        pipeline: Option<PathBuf>,
        #[arg(long)]
        roster: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        query: String,
    },
    /// Write synthetic CRM data (NDJSON) and its roster (`<out>.roster.csv`).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 14)]
        days: u32,
        #[arg(long, default_value_t = 12)]
        people: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First business date (default: days + 7 days before today).
        #[arg(long)]
        start: Option<String>,
        /// Record ids count up from N+1: give each of several files that will be
        /// ingested together its own range (the same id and version is one record).
        #[arg(long, default_value_t = 0)]
        first_id: u64,
    },
    /// Validate a pipeline file without running it, and show its compiled checks.
    CheckConfig {
        #[arg(long)]
        pipeline: PathBuf,
        /// Print every compiled check with its SQL.
        #[arg(long)]
        verbose: bool,
    },
    /// PostgreSQL-protocol SQL endpoint (database `crmdq`) and HTTP /healthz, /readyz,
    /// /metrics and the JSON API, over the committed warehouse, until SIGINT/SIGTERM.
    Serve {
        #[arg(long)]
        pipeline: PathBuf,
        #[arg(long)]
        warehouse: Option<PathBuf>,
        /// SQL endpoint address (default: the pipeline's serve.pg_listen, 127.0.0.1:5433).
        #[arg(long, value_name = "ADDR")]
        pg_listen: Option<String>,
        /// HTTP address (default: the pipeline's serve.http_listen, 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<String>,
        #[arg(long)]
        roster: Option<PathBuf>,
    },
    /// Kernel and Kafka measurements for benches/bench.py (JSON lines on stdout).
    #[command(hide = true)]
    Bench {
        #[arg(long)]
        pipeline: PathBuf,
        /// NDJSON input (e.g. from `crmdq generate`).
        #[arg(long)]
        input: PathBuf,
        /// Also measure Kafka end to end on the in-process mock cluster.
        #[arg(long)]
        kafka: bool,
        /// Folder for the Kafka run's warehouse (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Evaluate the pipeline's alert rules for a business date and notify (and record)
    /// what fires or resolves.
    Alerts {
        #[arg(long)]
        pipeline: PathBuf,
        #[arg(long)]
        warehouse: Option<PathBuf>,
        /// Business date YYYY-MM-DD (default: the latest scored date). A date before the
        /// latest one evaluated is a report: it changes no state and sends nothing.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        date: Option<String>,
        /// Replay a backfill: judge every business date from FROM to TO in order,
        /// firing, repeating and resolving as a daily job would have.
        #[arg(long, requires = "to", value_name = "D1")]
        from: Option<String>,
        #[arg(long, requires = "from", value_name = "D2")]
        to: Option<String>,
        /// Which events to deliver: `open` (the latest of each episode still firing at
        /// the end, and resolves of episodes open before) or `all`.
        #[arg(long, value_enum, default_value = "open")]
        deliver: DeliverArg,
        /// Print what would fire; send nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also POST every alert event (JSON) to this URL, pending ones included; it
        /// stands in for a route whose receiver is disabled.
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        roster: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DeliverArg {
    Open,
    All,
}

/// An error that maps to exit code 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

fn load(path: &Path, warehouse: Option<&PathBuf>) -> anyhow::Result<Pipeline> {
    let overrides = crmdq_config::Overrides {
        warehouse: warehouse.cloned(),
    };
    let p = Pipeline::load_with(path, &overrides).map_err(|e| UsageError(e.to_string()))?;
    // Fail on bad checks (e.g. user SQL) as a config error too.
    crmdq_check::Checker::compile(&p)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(p)
}

fn print(batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => println!("{}", arrow::util::pretty::pretty_format_batches(batches)?),
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

fn print_alerts(r: &crmdq_alerts::Report, dry_run: bool, rules: usize) {
    let verb = if dry_run { "would notify" } else { "notified" };
    let rules = if rules > 0 {
        format!("{rules} rule(s), ")
    } else {
        String::new()
    };
    let dates = match &r.from {
        Some(f) => format!("business dates {f} to {}", r.date.as_deref().unwrap_or("-")),
        None => format!("business date {}", r.date.as_deref().unwrap_or("-")),
    };
    if !r.report_only.is_empty() {
        println!(
            "{} date(s) before the latest evaluated one ({}): a report only; alert state unchanged, nothing sent",
            r.report_only.len(),
            r.through.as_deref().unwrap_or("-"),
        );
        for e in &r.reported {
            println!("- would have: {}", e.message.replace('\n', "\n  "));
        }
    }
    // Events of a replay that a later one supersedes are recorded, not sent: a count.
    let superseded = r
        .events
        .iter()
        .filter(|e| !dry_run && !e.delivered && !e.pending)
        .count();
    let live = r.events.len() - superseded;
    println!(
        "alerts for {dates}: {rules}{live} event(s) {verb}, {} still firing (already notified)",
        r.still_firing.len()
    );
    for e in r
        .events
        .iter()
        .filter(|e| dry_run || e.delivered || e.pending)
    {
        let to = e.receiver.as_deref().unwrap_or("no receiver");
        let status = if dry_run {
            String::new()
        } else if e.delivered {
            " [delivered]".to_string()
        } else {
            format!(" [pending: {}]", e.delivery_error.as_deref().unwrap_or("?"))
        };
        println!("- to {to}{status}:\n  {}", e.message.replace('\n', "\n  "));
    }
    if superseded > 0 {
        println!(
            "- {superseded} earlier event(s) of these dates recorded, not sent (--deliver open: a later event supersedes them; see the alerts table)"
        );
    }
    for (rule, subject) in &r.still_firing {
        println!("- still firing: {rule} {subject}");
    }
    for (rule, why) in &r.skipped {
        println!("- not evaluated: {rule}: {why}");
    }
    if !dry_run {
        println!(
            "delivery: {} earlier event(s) delivered now, {} pending, {} expired",
            r.redelivered, r.pending, r.expired
        );
    }
}

fn addr(v: &str, flag: &str) -> anyhow::Result<std::net::SocketAddr> {
    v.parse()
        .map_err(|e| UsageError(format!("{flag} `{v}`: not an IP:port address ({e})")).into())
}

fn clock(now: Option<&String>) -> anyhow::Result<Arc<dyn Clock>> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(s) => Ok(Arc::new(FixedClock(
            s.parse()
                .map_err(|e| UsageError(format!("--now `{s}`: {e}")))?,
        ))),
    }
}

async fn shutdown_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested: writing and committing what was consumed");
    token.cancel();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shared_clock = clock(cli.now.as_ref())?;
    let clock = shared_clock.as_ref();
    match cli.command {
        Command::Demo { dir, days, people } => {
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("crmdq-demo"));
            let started = std::time::Instant::now();
            let r = crmdq::demo::demo(&dir, clock, days, people).await?;
            println!(
                "crmdq demo: {} messages produced to an in-process Kafka mock cluster (topic crm.records, {} partitions)",
                r.produced, r.partitions
            );
            println!(
                "consumed {} messages → {} records, {} dead letters, {} commits in {:.1}s\n",
                r.run.messages,
                r.run.records,
                r.run.dead_letters,
                r.run.commits,
                started.elapsed().as_secs_f64()
            );
            println!("Teams (whole period):");
            print(&r.teams, Format::Table)?;
            println!("\nPeople (whole period), with the rules that cost them most:");
            print(&r.people, Format::Table)?;
            println!("\nDead letters by reason:");
            print(&r.dead_letters, Format::Table)?;
            println!("\nAlerts (the shipped rules, dry run):");
            print_alerts(&r.alerts, true, 0);
            println!("\nWarehouse: {}", r.dir.display());
            println!("Try next:");
            let pipeline = r.dir.parent().unwrap_or(&r.dir).join("pipeline.yaml");
            let pipeline = pipeline.display();
            println!("  crmdq alerts --pipeline {pipeline} --dry-run --date <YYYY-MM-DD>");
            println!(
                "  CRMDQ_SQL_USER=me CRMDQ_SQL_PASSWORD=pw crmdq serve --pipeline {pipeline}   # then: psql -h 127.0.0.1 -p 5433 -U me -d crmdq"
            );
            println!(
                "  crmdq sql --warehouse {} \"SELECT * FROM person_daily WHERE person_id = 'chen.jing' ORDER BY dt\"",
                r.dir.display()
            );
            println!(
                "  crmdq sql --warehouse {} \"SELECT record_id, dq_missing_fields, dq_failed_checks FROM customer WHERE entered_by = 'chen.jing' AND NOT (dq_complete AND dq_valid) LIMIT 10\"",
                r.dir.display()
            );
        }
        Command::Ingest {
            pipeline,
            warehouse,
            roster,
            inputs,
        } => {
            let p = load(&pipeline, warehouse.as_ref())?;
            let _ = roster;
            let w = Warehouse::open(&p.warehouse.path)?;
            let bar = std::io::stderr().is_terminal().then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("static template"),
                );
                b
            });
            let mut progress = |path: &Path, done: u64, total: u64| {
                if let Some(b) = &bar {
                    b.set_length(total);
                    b.set_position(done);
                    b.set_message(
                        path.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    );
                }
            };
            let started = std::time::Instant::now();
            let s = match crmdq_pipeline::ingest::ingest(
                &p,
                &w,
                &inputs,
                shared_clock.clone(),
                &mut progress,
            )
            .await
            {
                Err(crmdq_pipeline::PipelineError::Source(
                    crmdq_source::SourceError::Mapping { message },
                )) => {
                    return Err(UsageError(format!("{}: {message}", pipeline.display())).into());
                }
                r => r?,
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "ingested {} file(s): {} records, {} dead letters, {} lines already committed and skipped, {} commit(s) in {:.2}s ({:.0} records/s)",
                s.files,
                s.records,
                s.dead_letters,
                s.skipped_lines,
                s.commits,
                secs,
                (s.records + s.dead_letters) as f64 / secs.max(1e-9)
            );
            for (reason, n) in &s.by_reason {
                println!("  dead letters {reason}: {n}");
            }
        }
        Command::Run {
            pipeline,
            warehouse,
            brokers,
            roster,
            until_caught_up,
            http_listen,
        } => {
            let p = load(&pipeline, warehouse.as_ref())?;
            let _ = roster;
            let w = Warehouse::open(&p.warehouse.path)?;
            let token = tokio_util::sync::CancellationToken::new();
            let tasks = tokio_util::task::TaskTracker::new();
            let signal = tasks.spawn(shutdown_signal(token.clone()));
            let telemetry = crmdq_pipeline::run::Telemetry {
                metrics: Arc::new(crmdq_telemetry::Metrics::new()),
                health: Arc::new(crmdq_telemetry::RunHealth::new(p.serve.ready_max_lag)),
            };
            let http_stop = tokio_util::sync::CancellationToken::new();
            let http = match http_listen {
                None => None,
                Some(a) => {
                    let addr = addr(&a, "--http-listen")?;
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr}"))?;
                    let bound = listener.local_addr()?;
                    println!("HTTP on http://{bound} (/healthz, /readyz, /metrics)");
                    let state = crmdq_serve::http::AppState {
                        metrics: telemetry.metrics.clone(),
                        health: Arc::new(crmdq_serve::Health::run(telemetry.health.clone())),
                        live: crmdq_warehouse::LiveSnapshot::open(w.clone()).await?,
                        ctx: None,
                        auth: crmdq_serve::pg::Auth::Trust,
                        limiter: Arc::new(crmdq_serve::pg::LoginLimiter::new(
                            p.serve.max_failed_logins,
                        )),
                        freshness: Arc::default(),
                    };
                    Some(tasks.spawn(crmdq_serve::http::serve_http(
                        listener,
                        state,
                        http_stop.clone(),
                    )))
                }
            };
            let opts = crmdq_pipeline::run::RunOptions {
                brokers,
                until_caught_up,
                telemetry: Some(telemetry),
            };
            let s = crmdq_pipeline::run::run(&p, &w, &opts, clock, token).await;
            signal.abort();
            http_stop.cancel();
            if let Some(h) = http {
                let _ = h.await;
            }
            tasks.close();
            tasks.wait().await;
            let s = s?;
            println!(
                "consumed {} messages: {} records, {} dead letters, {} commits, {} rebalances",
                s.messages, s.records, s.dead_letters, s.commits, s.rebalances
            );
            if let Some(b) = s.busy_share() {
                println!(
                    "busy {:.0}% of the time since the first message (the rest: waiting for the broker)",
                    b * 100.0
                );
            }
        }
        Command::Score {
            pipeline,
            warehouse,
            roster,
            chunk_rows,
            no_alerts,
        } => {
            let p = load(&pipeline, warehouse.as_ref())?;
            let w = Warehouse::open(&p.warehouse.path)?;
            let roster = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
            let s = crmdq_score::score_with(
                &p,
                &w,
                roster.as_deref(),
                clock.now().to_string(),
                &crmdq_score::ScoreOptions {
                    chunk_rows,
                    ..crmdq_score::ScoreOptions::default()
                },
            )
            .await?;
            println!(
                "scored {} business date(s) in {} chunk(s){} (log version {}):",
                s.dates,
                s.chunks,
                if s.rescored_chunks > 0 {
                    format!(
                        ", {} scored again for versions delivered on dates in two chunks",
                        s.rescored_chunks
                    )
                } else {
                    String::new()
                },
                s.version
            );
            for (t, n) in &s.rows {
                println!("  {t}: {n} rows");
            }
            if !p.alerts.rules.is_empty() && !no_alerts {
                // Evaluation after every scoring run: every scored date after the latest
                // evaluated one, in order (the latest again when none is new).
                let opts = crmdq_alerts::EvalOptions {
                    dates: crmdq_alerts::Dates::CatchUp,
                    scored_entries: s.entries.clone(),
                    ..crmdq_alerts::EvalOptions::latest(clock.now())
                };
                let r = crmdq_alerts::evaluate(&p, &w, roster.as_deref(), &opts).await?;
                print_alerts(&r, false, p.alerts.rules.len());
            }
        }
        Command::Sql {
            warehouse,
            pipeline,
            roster,
            format,
            query,
        } => {
            if !warehouse.join(crmdq_warehouse::LOG_DIR).exists() {
                return Err(UsageError(format!(
                    "{}: not a crmdq warehouse (no {} folder)",
                    warehouse.display(),
                    crmdq_warehouse::LOG_DIR
                ))
                .into());
            }
            let w = Warehouse::open(&warehouse)?;
            // With a pipeline, its roster (derived through roster.mapping if it has one).
            let roster = match pipeline {
                Some(p) => {
                    let p = load(&p, None)?;
                    let path = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
                    crmdq_catalog::roster::load_for_pipeline(&p, path.as_deref()).await?
                }
                None => crmdq_catalog::roster::load(roster.as_deref()).await?,
            };
            let ctx = crmdq_catalog::open_with(&w, roster).await?;
            let opts = datafusion::execution::context::SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx
                .sql_with_options(&query, opts)
                .await
                .map_err(|e| UsageError(format!("query: {e}")))?;
            print(&df.collect().await?, format)?;
        }
        Command::Generate {
            out,
            days,
            people,
            seed,
            start,
            first_id,
        } => {
            let tz = jiff::tz::TimeZone::get("Asia/Shanghai")?;
            let start = match start {
                Some(s) => s
                    .parse()
                    .map_err(|e| UsageError(format!("--start `{s}`: {e}")))?,
                None => {
                    clock.now().to_zoned(tz.clone()).date()
                        - jiff::Span::new().days(i64::from(days) + 7)
                }
            };
            let spec = crmdq_testkit::generate::GenSpec {
                start,
                days,
                people,
                seed,
                tz,
                first_id,
            };
            let lines = crmdq_testkit::generate::generate(&spec);
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            let roster = PathBuf::from(format!("{}.roster.csv", out.display()));
            std::fs::write(&roster, crmdq_testkit::generate::roster_csv(&spec))
                .with_context(|| format!("writing {}", roster.display()))?;
            println!(
                "wrote {} records to {} and the roster to {}",
                lines.len(),
                out.display(),
                roster.display()
            );
        }
        Command::Bench {
            pipeline,
            input,
            kafka,
            dir,
        } => {
            let p = load(&pipeline, None)?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            drop(text);
            let mut out = crmdq_testkit::kernels::kernels(&p, &lines, clock.now())?;
            if kafka {
                let tmp = tempfile::tempdir()?;
                let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
                out.extend(crmdq::bench::kafka_mock(&p, &lines, &dir, clock).await?);
            }
            for k in out {
                println!("{}", serde_json::to_string(&k)?);
            }
        }
        Command::CheckConfig { pipeline, verbose } => {
            let p = load(&pipeline, None)?;
            let checker = crmdq_check::Checker::compile(&p)?;
            println!(
                "{}: ok (pipeline `{}`, time zone {}, phone region {})",
                pipeline.display(),
                p.name,
                p.time_zone_name,
                p.checks.phone_region
            );
            for w in p.alerts.warnings() {
                eprintln!("warning: {}: {w}", pipeline.display());
            }
            for rt in crmdq_schema::RecordType::ALL {
                let (missing, failed) = checker.describe(rt);
                println!(
                    "  {rt}: key fields [{}], {} validity checks",
                    missing
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    failed.len()
                );
                if verbose {
                    for c in missing {
                        println!("    missing {:<24} {}", c.name, c.sql);
                    }
                    for c in failed {
                        println!("    check   {:<24} fails when {}", c.name, c.sql);
                    }
                }
            }
        }
        Command::Serve {
            pipeline,
            warehouse,
            pg_listen,
            http_listen,
            roster,
        } => {
            let p = load(&pipeline, warehouse.as_ref())?;
            let w = Warehouse::open(&p.warehouse.path)?;
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
            let token = tokio_util::sync::CancellationToken::new();
            let tasks = tokio_util::task::TaskTracker::new();
            let signal = tasks.spawn(shutdown_signal(token.clone()));
            let root = w.root().to_path_buf();
            let r = crmdq_serve::serve(&p, w, &opts, token, |pg, http| {
                println!(
                    "serving {}: SQL on postgresql://{pg}/{}, HTTP on http://{http} (/healthz, /readyz, /metrics, /api/v1)",
                    root.display(),
                    crmdq_serve::pg::DATABASE
                );
            })
            .await;
            signal.abort();
            tasks.close();
            tasks.wait().await;
            match r {
                Err(crmdq_serve::ServeError::Usage(m)) => return Err(UsageError(m).into()),
                r => r?,
            }
        }
        Command::Alerts {
            pipeline,
            warehouse,
            date,
            from,
            to,
            deliver,
            dry_run,
            webhook,
            roster,
        } => {
            let p = load(&pipeline, warehouse.as_ref())?;
            let w = Warehouse::open(&p.warehouse.path)?;
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
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRMDQ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crmdq: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crmdq: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The allocator settings from `.cargo/config.toml` are compiled in (without them,
    /// `score` on 10M entries peaks ~200 MiB higher; README "Performance").
    #[test]
    fn allocator_settings() {
        let conf = tikv_jemalloc_ctl::config::malloc_conf::read().unwrap();
        for setting in [
            "background_thread:true",
            "dirty_decay_ms:1000",
            "muzzy_decay_ms:0",
        ] {
            assert!(conf.contains(setting), "{setting} not in {conf:?}");
        }
        // In effect, unless overridden at run time.
        if std::env::var_os("_RJEM_MALLOC_CONF").is_none() {
            assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
        }
    }
}
