//! `crmdq`: the thin command line. Parses arguments, sets up logging and the clock, hands
//! each command to its module in [`cmd`] and maps errors to the contract's exit codes (0
//! ok, 2 usage or config, 1 anything else). All behaviour lives in the library crates.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: `score` works through a warehouse a chunk of dates
/// at a time from several threads, and glibc's per-thread arenas kept what each chunk
/// freed (RSS on 10M entries grew from 350 MiB to 1.1 GB over 25 chunks of the same size;
/// with two arenas it stayed near 400 MiB). It also serves the C libraries' `malloc`
/// (zstd, librdkafka; `unprefixed_malloc_on_supported_platforms`): glibc's heap grew and
/// shrank around each zstd context parquet creates; served by jemalloc, a 1M score
/// faults 18% fewer pages (docs/performance.md).
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

mod cmd;

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

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on this machine: mock Kafka, synthetic stream, ingest, score, scoreboard.
    Demo(cmd::demo::Args),
    /// Backfill from NDJSON or CSV files (optionally gzipped). Re-ingesting a file adds nothing.
    Ingest(cmd::ingest::Args),
    /// Consume Kafka as the pipeline says until SIGINT/SIGTERM.
    Run(cmd::run::Args),
    /// (Re)compute the score tables.
    Score(cmd::score::Args),
    /// Query the warehouse tables by name (read-only).
    Sql(cmd::sql::Args),
    /// Write synthetic CRM data (NDJSON), its roster (`<out>.roster.csv`) and absences (`<out>.absences.csv`).
    Generate(cmd::generate::Args),
    /// Validate a pipeline file without running it, and show its compiled checks.
    CheckConfig(cmd::check_config::Args),
    /// PostgreSQL-protocol SQL endpoint (database `crmdq`) and HTTP /healthz, /readyz,
    /// /metrics and the JSON API, over the committed warehouse, until SIGINT/SIGTERM.
    Serve(cmd::serve::Args),
    /// Kernel and Kafka measurements for benches/bench.py (JSON lines on stdout).
    #[command(hide = true)]
    Bench(cmd::bench::Args),
    /// The scorecards of a review period: HTML pages (index, teams, people, pipeline) or
    /// one XLSX workbook, in English or Simplified Chinese.
    Report(cmd::report::Args),
    /// Evaluate the pipeline's alert rules for a business date and notify (and record)
    /// what fires or resolves.
    Alerts(cmd::alerts::Args),
    /// Convert a warehouse written by an earlier crmdq (format 1) in place: its tables
    /// become Delta tables; no data file is rewritten.
    Migrate(cmd::migrate::Args),
    /// Compact the small files of each partition into larger ones (safe while `run`
    /// commits; published to the Delta tables as OPTIMIZE).
    Optimize(cmd::optimize::Args),
    /// Delete the data files that no version within the retention needs (replaced,
    /// compacted, or never committed).
    Vacuum(cmd::vacuum::Args),
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let clock = cmd::clock(cli.now.as_ref())?;
    match cli.command {
        Command::Demo(a) => cmd::demo::run(a, &clock).await,
        Command::Ingest(a) => cmd::ingest::run(a, &clock).await,
        Command::Run(a) => cmd::run::run(a, &clock).await,
        Command::Score(a) => cmd::score::run(a, &clock).await,
        Command::Sql(a) => cmd::sql::run(a, &clock).await,
        Command::Generate(a) => cmd::generate::run(a, &clock),
        Command::CheckConfig(a) => cmd::check_config::run(a, &clock),
        Command::Serve(a) => cmd::serve::run(a, &clock).await,
        Command::Bench(a) => cmd::bench::run(a, &clock).await,
        Command::Alerts(a) => cmd::alerts::run(a, &clock).await,
        Command::Report(a) => cmd::report::run(a, &clock).await,
        Command::Migrate(a) => cmd::migrate::run(a, &clock).await,
        Command::Optimize(a) => cmd::optimize::run(a, &clock).await,
        Command::Vacuum(a) => cmd::vacuum::run(a, &clock).await,
    }
}

/// `CRMDQ_LOG` (an `EnvFilter`, default `warn`). delta-rs and its kernel log every Delta
/// commit at info: they stay at warn unless `CRMDQ_LOG` names them.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("CRMDQ_LOG").unwrap_or_default();
    let mut f =
        tracing_subscriber::EnvFilter::try_new(if spec.is_empty() { "warn" } else { &spec })
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    for quiet in ["deltalake_core=warn", "buoyant_kernel=warn"] {
        if !spec.contains(quiet.split('=').next().unwrap_or_default())
            && let Ok(d) = quiet.parse()
        {
            f = f.add_directive(d);
        }
    }
    f
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
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
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crmdq: {e:#}");
            // A warehouse to migrate first is a usage error too.
            let wrong_format = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<crmdq_warehouse::WarehouseError>(),
                    Some(
                        crmdq_warehouse::WarehouseError::NeedsMigration { .. }
                            | crmdq_warehouse::WarehouseError::NewerFormat { .. }
                    )
                )
            });
            if e.downcast_ref::<cmd::UsageError>().is_some() || wrong_format {
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
            "dirty_decay_ms:250",
            "muzzy_decay_ms:0",
        ] {
            assert!(conf.contains(setting), "{setting} not in {conf:?}");
        }
        // In effect, unless overridden at run time.
        if std::env::var_os("MALLOC_CONF").is_none() {
            assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
        }
    }

    /// jemalloc serves the C libraries' `malloc` too: a zstd compressor's workspace
    /// (level 19 on 4 MiB: tens of MiB, allocated by zstd's C code) is counted by
    /// jemalloc's per-thread total.
    #[test]
    fn c_code_allocates_from_jemalloc() {
        let input: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        let total = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap();
        let before = total.get();
        let mut c = zstd::zstd_safe::CCtx::create();
        c.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(19))
            .unwrap();
        c.compress2(&mut out, &input).unwrap();
        let grown = total.get() - before;
        assert!(
            grown > 16 << 20,
            "jemalloc saw {grown} bytes of zstd's workspace"
        );
        drop(c);
        assert_eq!(zstd::bulk::decompress(&out, input.len()).unwrap(), input);
    }
}
