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
    sql_env(w.to_str().unwrap(), q, &[])
}

/// [`sql`] on a warehouse folder or URL, with extra environment variables.
pub fn sql_env(w: &str, q: &str, env: &[(String, String)]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_crmdq"))
        .args(["sql", "--warehouse", w, "--format", "json", q])
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    run_env(args, &[])
}

/// [`run`] with extra environment variables (an object-store warehouse's credentials).
pub fn run_env(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_crmdq"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
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

/// A local S3 server (moto's ThreadedMotoServer, installed by `.ci/run`) on a free
/// loopback port, driven by `tests/readers/moto_ctl.py`: [`Moto::stop`] makes the endpoint
/// unreachable, [`Moto::start`] brings it back with every object written before.
pub struct Moto {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
    pub port: u16,
}

impl Moto {
    pub fn start_server() -> Moto {
        need_python("moto.server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .arg(fixtures().join("../readers/moto_ctl.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 moto_ctl.py");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut m = Moto {
            child,
            stdin,
            out,
            port,
        };
        m.expect("up");
        m
    }

    fn expect(&mut self, word: &str) {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), word, "moto_ctl.py said {line:?}");
    }

    fn command(&mut self, cmd: &str, answer: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        self.expect(answer);
    }

    /// The endpoint stops answering (connections refused).
    pub fn stop(&mut self) {
        self.command("stop", "down");
    }

    /// The endpoint answers again, with everything written before the stop.
    pub fn start(&mut self) {
        self.command("start", "up");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket (moto does not check signatures).
    pub fn bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {answer}"
        );
    }

    /// The standard AWS environment variables for this server (what an operator sets).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "crmdq-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "crmdq-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same as object_store configuration keys (for this test process's own reader).
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        self.env()
            .into_iter()
            .map(|(k, v)| {
                let k = k
                    .to_ascii_lowercase()
                    .replace("aws_endpoint_url", "aws_endpoint");
                (k, v)
            })
            .collect()
    }

    /// An object-store warehouse location in `bucket` for this process's own reader.
    pub fn location(&self, url: &str) -> crmdq_warehouse::Location {
        crmdq_warehouse::Location::Url {
            url: url.to_string(),
            options: self.options(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files a Delta table's log says are live, (path, dt), read by delta-rs: for an
/// object-store warehouse through its store, and the bytes of one of its files.
pub fn delta_live_files_at(
    at: &crmdq_warehouse::Location,
    dir: &str,
) -> Option<(Vec<(String, String)>, crmdq_warehouse::Warehouse)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = crmdq_warehouse::Warehouse::connect(at).await.unwrap();
        let t = w.delta_table(dir).await.unwrap()?;
        let files = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| {
                let dt = f.partition_values_map()["dt"].clone().unwrap();
                (f.path().to_string(), dt)
            })
            .collect();
        Some((files, w))
    })
}

/// A warehouse file's bytes (local or object store).
pub fn warehouse_bytes(w: &crmdq_warehouse::Warehouse, rel: &str) -> bytes::Bytes {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(warehouse_bytes_async(w, rel))
}

pub async fn warehouse_bytes_async(w: &crmdq_warehouse::Warehouse, rel: &str) -> bytes::Bytes {
    use object_store::ObjectStoreExt as _;
    w.store()
        .get(&object_store::path::Path::from(rel))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}
