//! `crmdq serve` with real clients: the `psql` binary, Python `psycopg`, Python
//! `prometheus_client`'s exposition parser, and plain HTTP for the JSON API.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::{Server, bin, fixtures, http_get, parse_metrics, serve};

const USER: &str = "analyst";
const PASSWORD: &str = "s3cret-pw";

fn ok(mut c: Command) -> Output {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ingest(w: &Path, input: &Path) {
    common::ingest(w, &[input]);
}

fn score(w: &Path) {
    common::score(w);
}

fn psql_with(srv: &Server, password: &str, args: &[&str]) -> Output {
    Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &srv.pg.ip().to_string(),
            "-p",
            &srv.pg.port().to_string(),
            "-U",
            USER,
            "-d",
            "crmdq",
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap()
}

fn psql(srv: &Server, q: &str) -> String {
    let out = psql_with(srv, PASSWORD, &["-c", q]);
    assert!(
        out.status.success(),
        "psql -c {q:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn api(srv: &Server, path: &str) -> Value {
    let (code, body) = http_get(srv.http, path, Some((USER, PASSWORD)));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn need_psql() {
    common::need(
        "psql (postgresql-client)",
        Command::new("psql").arg("--version"),
    );
}

#[test]
#[ignore = "needs psql, Python psycopg and prometheus_client; .ci/run installs them and runs the ignored tests"]
fn psql_psycopg_metrics_and_api_against_a_live_warehouse() {
    need_psql();
    common::need_python("psycopg, prometheus_client");
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    ingest(&w, &fixtures().join("small.ndjson"));
    score(&w);
    let srv = serve(
        &w,
        &fixtures().join("pipeline.yaml"),
        &[("CRMDQ_SQL_USER", USER), ("CRMDQ_SQL_PASSWORD", PASSWORD)],
    );

    // Tables by name, the catalog psql browses with.
    assert_eq!(psql(&srv, "SELECT count(*) FROM customer"), "4");
    assert_eq!(psql(&srv, "SELECT count(*) FROM dead_letters"), "2");
    let dt = psql(&srv, "\\dt");
    for t in [
        "customer",
        "activity",
        "service_ticket",
        "opportunity",
        "order",
        "checkin",
        "dead_letters",
        "person_daily",
        "team_daily",
        "rule_daily",
        "roster",
    ] {
        assert!(
            dt.lines().any(|l| l.split('|').nth(1) == Some(t)),
            "\\dt lacks {t}:\n{dt}"
        );
    }
    let d = psql(&srv, "\\d person_daily");
    for col in ["person_id", "completeness_rate", "score", "dt"] {
        assert!(d.contains(col), "\\d person_daily lacks {col}:\n{d}");
    }

    // Scores over the wire equal `crmdq sql`'s.
    let want: Vec<String> = common::sql(
        &w,
        "SELECT person_id, role, score FROM person_daily WHERE dt = '2026-11-26' ORDER BY person_id, role",
    )
    .iter()
    .map(|r| format!("{}|{}|{}", r["person_id"].as_str().unwrap(), r["role"].as_str().unwrap(), r["score"]))
    .collect();
    let got = psql(
        &srv,
        "SELECT person_id, role, score FROM person_daily WHERE dt = '2026-11-26' ORDER BY person_id, role",
    );
    let got: Vec<String> = got
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let x: f64 = f[2].parse().unwrap();
            format!("{}|{}|{}", f[0], f[1], serde_json::json!(x))
        })
        .collect();
    assert_eq!(got, want);
    // Serving views: latest day, failing records with reasons.
    assert_eq!(
        psql(&srv, "SELECT DISTINCT dt FROM person_latest"),
        "2026-11-27"
    );
    let failing = psql(
        &srv,
        "SELECT record_id, reasons FROM failing_records WHERE person_id = 'bob' AND dt = '2026-11-26' ORDER BY record_id, version",
    );
    assert!(failing.contains("c2|missing phone"), "{failing}");
    assert!(failing.contains("failed age.type"), "{failing}");

    // Read-only: writes are refused and change nothing.
    for stmt in [
        "INSERT INTO customer (record_id) VALUES ('x')",
        "CREATE TABLE t (a INT)",
        "DROP TABLE customer",
        "DELETE FROM customer",
        "COPY customer TO '/tmp/x.csv'",
    ] {
        let out = psql_with(&srv, PASSWORD, &["-c", stmt]);
        assert!(!out.status.success(), "{stmt} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{stmt}: {err}");
    }
    assert_eq!(psql(&srv, "SELECT count(*) FROM customer"), "4");

    // psycopg (what Python BI scripts use) fetches the same scores.
    let script = r#"
import json, sys, psycopg
host, port, user, pw = sys.argv[1:5]
with psycopg.connect(host=host, port=port, user=user, password=pw, dbname="crmdq", connect_timeout=10) as conn:
    rows = conn.execute("SELECT team_id, entries, score FROM team_daily WHERE dt = %s ORDER BY team_id", ("2026-11-26",)).fetchall()
print(json.dumps([[t, int(e), float(s)] for t, e, s in rows]))
"#;
    let mut py = Command::new("python3");
    py.args([
        "-c",
        script,
        &srv.pg.ip().to_string(),
        &srv.pg.port().to_string(),
        USER,
        PASSWORD,
    ]);
    let got: Value = serde_json::from_slice(&ok(py).stdout).unwrap();
    let want: Vec<Value> = common::sql(
        &w,
        "SELECT team_id, entries, score FROM team_daily WHERE dt = '2026-11-26' ORDER BY team_id",
    )
    .iter()
    .map(|r| serde_json::json!([r["team_id"], r["entries"], r["score"].as_f64().unwrap()]))
    .collect();
    assert_eq!(got, Value::Array(want));

    // Health and metrics.
    assert_eq!(http_get(srv.http, "/healthz", None).0, 200);
    let (code, body) = http_get(srv.http, "/readyz", None);
    assert_eq!(code, 200, "{body}");
    let m = parse_metrics(&http_get(srv.http, "/metrics", None).1);
    assert_eq!(m["crmdq_warehouse_rows{table=customer}"], 4.0);
    assert_eq!(m["crmdq_warehouse_rows{table=dead_letters}"], 2.0);

    // The JSON API: credentials required; pages; a person's rules and failing records.
    assert_eq!(http_get(srv.http, "/api/v1/people", None).0, 401);
    assert_eq!(
        http_get(srv.http, "/api/v1/people", Some((USER, "wrong"))).0,
        401
    );
    let people = api(&srv, "/api/v1/people?from=2026-11-26&limit=2");
    assert_eq!(people["items"].as_array().unwrap().len(), 2);
    assert_eq!(people["next_offset"], 2);
    let all = api(&srv, "/api/v1/people?from=2026-11-26&to=2026-11-27");
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        common::sql(&w, "SELECT count(*) AS n FROM person_daily")[0]["n"]
            .as_u64()
            .unwrap() as usize
    );
    let rules = api(&srv, "/api/v1/people/amy/rules?from=2026-11-26");
    assert!(
        rules["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule"] == "late" && r["entries"] == 1),
        "{rules}"
    );
    let failing = api(&srv, "/api/v1/people/bob/failing?date=2026-11-26");
    let ids: Vec<&str> = failing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c2", "c2"], "{failing}");
    let (code, _) = http_get(
        srv.http,
        "/api/v1/people?from=yesterday",
        Some((USER, PASSWORD)),
    );
    assert_eq!(code, 400);

    // A commit made while the server runs is visible to the next query.
    let more = dir.path().join("more.ndjson");
    std::fs::write(
        &more,
        "{\"record_type\":\"customer\",\"record_id\":\"c9\",\"version\":1,\"entered_by\":\"amy\",\"team_id\":\"east\",\"event_time\":\"2026-11-26T09:00:00+08:00\",\"entered_at\":\"2026-11-26T09:05:00+08:00\",\"name\":\"N\",\"phone\":\"13912345678\",\"occupation\":\"teacher\",\"age\":40}\n",
    )
    .unwrap();
    ingest(&w, &more);
    assert_eq!(psql(&srv, "SELECT count(*) FROM customer"), "5");
    let m = parse_metrics(&http_get(srv.http, "/metrics", None).1);
    assert_eq!(m["crmdq_warehouse_rows{table=customer}"], 5.0);

    // A wrong password is refused and logged; repeated failures lock the address out.
    let out = psql_with(&srv, "wrong", &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    // One failed API login and one failed SQL login so far; the default budget is 5 a minute.
    for _ in 0..3 {
        assert!(
            !psql_with(&srv, "wrong", &["-c", "SELECT 1"])
                .status
                .success()
        );
    }
    let out = psql_with(&srv, PASSWORD, &["-c", "SELECT 1"]);
    assert!(
        !out.status.success(),
        "the right password got through a lockout"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too many failed logins"), "{err}");
}

#[test]
#[ignore = "needs psql; .ci/run installs it and runs the ignored tests"]
fn serve_needs_credentials_unless_trust_is_asked_for_on_loopback() {
    need_psql();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let p = fixtures().join("pipeline.yaml");
    let base = [
        "serve",
        "--pipeline",
        p.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
        "--http-listen",
        "127.0.0.1:0",
    ];
    // No credentials: refused with exit code 2 and a message naming the variables.
    let out = bin()
        .args(base)
        .args(["--pg-listen", "127.0.0.1:0"])
        .env_remove("CRMDQ_SQL_USER")
        .env_remove("CRMDQ_SQL_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRMDQ_SQL_PASSWORD"));
    // Trust mode never on a non-loopback address.
    let trust = dir.path().join("trust.yaml");
    std::fs::write(
        &trust,
        format!(
            "roster: {}\nserve:\n  trust: true\n",
            fixtures().join("roster.csv").display()
        ),
    )
    .unwrap();
    let out = bin()
        .args([
            "serve",
            "--pipeline",
            trust.to_str().unwrap(),
            "--warehouse",
            w.to_str().unwrap(),
            "--pg-listen",
            "0.0.0.0:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_remove("CRMDQ_SQL_USER")
        .env_remove("CRMDQ_SQL_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    // Trust on loopback, asked for: serves an empty warehouse.
    let srv = serve(&w, &trust, &[]);
    let started = Instant::now();
    let out = loop {
        let out = psql_with(&srv, "", &["-c", "SELECT count(*) FROM person_daily"]);
        if out.status.success() || started.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

/// With `serve.tls_cert`/`serve.tls_key`, psql connects with `sslmode=require` and the
/// session is encrypted.
#[test]
#[ignore = "needs psql and openssl; .ci/run installs them and runs the ignored tests"]
fn sql_endpoint_over_tls() {
    need_psql();
    common::need("openssl", Command::new("openssl").arg("version"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut keygen = Command::new("openssl");
    keygen
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    ok(keygen);
    let p = dir.path().join("tls.yaml");
    std::fs::write(
        &p,
        format!(
            "serve:\n  tls_cert: {}\n  tls_key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let w = dir.path().join("wh");
    let srv = serve(
        &w,
        &p,
        &[("CRMDQ_SQL_USER", USER), ("CRMDQ_SQL_PASSWORD", PASSWORD)],
    );
    let out = Command::new("psql")
        .arg(format!(
            "host={} port={} user={USER} dbname=crmdq sslmode=require",
            srv.pg.ip(),
            srv.pg.port()
        ))
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM customer",
            "-c",
            "\\conninfo",
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with('0'), "{text}");
    assert!(text.contains("SSL connection"), "{text}");
}
