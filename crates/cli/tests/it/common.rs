//! Helpers shared by the end-to-end tests: a minimal HTTP client and Prometheus's own
//! exposition parser (Python `prometheus_client`), and `crmdq sql` as JSON rows.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, basic: Option<(&str, &str)>) -> (u16, String) {
    use base64::Engine as _;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = basic.map_or(String::new(), |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// Parse `/metrics` with Prometheus's own Python parser; returns {name{labels}: value}.
pub fn parse_metrics(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `crmdq sql --format json` over warehouse `w`: one JSON object per row.
pub fn sql(w: &std::path::Path, q: &str) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_crmdq"))
        .args([
            "sql",
            "--warehouse",
            w.to_str().unwrap(),
            "--format",
            "json",
            q,
        ])
        .output()
        .expect("run crmdq sql");
    assert!(
        out.status.success(),
        "crmdq sql {q:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub const NOW: &str = "2026-11-28T12:00:00Z";

pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A Python module `.ci/run` installs: the tests that call this are `#[ignore]`d and run
/// by `.ci/run`, so a missing module fails rather than passes silently.
pub fn need_python(module: &str) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "Python {module} is not installed (.ci/run installs it)");
}

/// A command-line tool `.ci/run` installs (see [`need_python`]).
pub fn need(tool: &str, probe: &mut Command) {
    assert!(
        probe.output().is_ok_and(|o| o.status.success()),
        "{tool} is not installed (.ci/run installs it)"
    );
}

/// The `crmdq` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crmdq"))
}

/// Run crmdq; it must succeed.
pub fn run(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_crmdq"))
        .args(args)
        .output()
        .expect("run crmdq");
    assert!(
        out.status.success(),
        "crmdq {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Ingest `inputs` with the fixture pipeline at the fixed clock; returns the output.
pub fn ingest(w: &std::path::Path, inputs: &[&std::path::Path]) -> String {
    let p = fixtures().join("pipeline.yaml");
    let mut args = vec![
        "--now",
        NOW,
        "ingest",
        "--pipeline",
        p.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
    ];
    args.extend(inputs.iter().map(|i| i.to_str().unwrap()));
    String::from_utf8(run(&args).stdout).unwrap()
}

/// `ingest` of `input` then `score` (with `extra` arguments, e.g. `--roster R`,
/// `--no-alerts`), with `pipeline` into `w`, at the clock `now`.
pub fn ingest_and_score(
    now: &str,
    pipeline: &std::path::Path,
    w: &std::path::Path,
    input: &std::path::Path,
    extra: &[&str],
) {
    let (p, w) = (pipeline.to_str().unwrap(), w.to_str().unwrap());
    run(&[
        "--now",
        now,
        "ingest",
        "--pipeline",
        p,
        "--warehouse",
        w,
        input.to_str().unwrap(),
    ]);
    let mut args = vec!["--now", now, "score", "--pipeline", p, "--warehouse", w];
    args.extend(extra);
    run(&args);
}

pub fn score(w: &std::path::Path) {
    let p = fixtures().join("pipeline.yaml");
    run(&[
        "--now",
        NOW,
        "score",
        "--pipeline",
        p.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
    ]);
}

/// A `crmdq serve` child process on free loopback ports, killed on drop.
pub struct Server {
    pub child: Child,
    pub pg: SocketAddr,
    pub http: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn between<'a>(s: &'a str, start: &str, end: char) -> &'a str {
    let i = s.find(start).unwrap() + start.len();
    let rest = &s[i..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// Start `crmdq serve` over `w` with pipeline `p` and extra environment `env`.
pub fn serve(w: &Path, p: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = bin()
        .args([
            "serve",
            "--pipeline",
            p.to_str().unwrap(),
            "--warehouse",
            w.to_str().unwrap(),
            "--pg-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_remove("CRMDQ_SQL_USER")
        .env_remove("CRMDQ_SQL_PASSWORD")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("serve printed its addresses").unwrap();
    std::thread::spawn(move || for _ in lines {});
    let pg = between(&line, "postgresql://", '/').parse().unwrap();
    let http = between(&line, "http://", ' ').parse().unwrap();
    Server { child, pg, http }
}

/// The live files of the Delta table in `w/dir` as delta-rs reads its Delta log (no crmdq
/// code involved): (table-relative path, `dt`). `None` when there is no Delta table.
pub fn delta_live_files(w: &Path, dir: &str) -> Option<Vec<(String, String)>> {
    let url = url::Url::from_directory_path(w.canonicalize().unwrap().join(dir)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = match deltalake_core::open_table(url).await {
            Ok(t) => t,
            Err(deltalake_core::DeltaTableError::NotATable(_)) => return None,
            Err(e) => panic!("{dir}: {e}"),
        };
        Some(
            t.snapshot()
                .unwrap()
                .log_data()
                .iter()
                .map(|f| {
                    let dt = f.partition_values_map()["dt"].clone().unwrap();
                    (f.path().to_string(), dt)
                })
                .collect(),
        )
    })
}
