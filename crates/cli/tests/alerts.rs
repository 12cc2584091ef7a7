//! Alert scenarios over generated data with the clock under test control (`--now`), each
//! evaluation a separate `crmdq alerts` process (so state survives restarts by design),
//! deliveries checked at a local HTTP receiver (body, HMAC signature, retries after a 500).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crmdq"))
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = bin()
        .args(args)
        .envs(env.iter().copied())
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

/// One received request.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// A local HTTP receiver: answers 500 to the first request on each path in `fail_first`,
/// 200 otherwise, and records every request.
fn receiver(fail_first: &[&str]) -> (SocketAddr, Arc<Mutex<Vec<Hit>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let mut failing: Vec<String> = fail_first.iter().map(|s| (*s).to_string()).collect();
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = BTreeMap::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let n: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; n];
            r.read_exact(&mut body).unwrap();
            let status = if let Some(i) = failing.iter().position(|p| path.starts_with(p.as_str()))
            {
                failing.remove(i);
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            h.lock().unwrap().push(Hit {
                path,
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (addr, hits)
}

const SECRET: &str = "team-lead-secret";

/// 30 days of customer entries from 2026-10-01. `anomalies`: on day 20 `b.collapse`
/// leaves occupation empty in 8 of 10 entries (day 21 recovers), and on days 20–25 team
/// north's `c.late` enters everything three days late. `d.few` makes 3 entries a day
/// (too few to ever be judged), all incomplete on day 20.
fn data(dir: &Path, anomalies: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let roster = dir.join("roster.csv");
    std::fs::write(
        &roster,
        "person_id,name,role,team_id,manager_id,valid_from,valid_to\n\
         a.ok,A,sales_assistant,east,mgr.east,2026-01-01,\n\
         b.collapse,B,sales_assistant,east,mgr.east,2026-01-01,\n\
         c.late,C,sales_rep,north,mgr.north,2026-01-01,\n\
         d.few,D,sales_rep,north,mgr.north,2026-01-01,\n",
    )
    .unwrap();
    let mut lines = Vec::new();
    let mut n = 0u64;
    let start: jiff::civil::Date = "2026-10-01".parse().unwrap();
    for day in 1..=30i64 {
        let d = start + jiff::Span::new().days(day - 1);
        for (person, team, count) in [
            ("a.ok", "east", 10),
            ("b.collapse", "east", 10),
            ("c.late", "north", 10),
            ("d.few", "north", 3),
        ] {
            for i in 0..count {
                n += 1;
                let incomplete = match person {
                    "b.collapse" => anomalies && day == 20 && i < 8,
                    "d.few" => anomalies && day == 20,
                    _ => false,
                };
                let late = anomalies && person == "c.late" && (20..=25).contains(&day);
                let entered = if late {
                    d + jiff::Span::new().days(3)
                } else {
                    d
                };
                lines.push(
                    serde_json::json!({
                        "record_type": "customer",
                        "record_id": format!("c{n}"),
                        "owner_id": person,
                        "entered_by": person,
                        "team_id": team,
                        "event_time": format!("{d} 09:00:00"),
                        "entered_at": format!("{entered} 18:00:00"),
                        "phone": format!("1382{:07}", (n * 104_729) % 10_000_000),
                        "occupation": if incomplete { "" } else { "teacher" },
                        "age": 30 + (n % 20),
                    })
                    .to_string(),
                );
            }
        }
    }
    let input = dir.join("crm.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    (input, roster)
}

fn pipeline(dir: &Path, roster: &Path, recv: SocketAddr) -> std::path::PathBuf {
    let p = dir.join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "roster: {roster}
alerts:
  min_entries: 5
  repeat_interval_hours: 72
  receivers:
    east_lead: {{ type: webhook, url: 'http://{recv}/east', secret_env: CRMDQ_TEST_ALERT_SECRET }}
    north_lead: {{ type: webhook, url: 'http://{recv}/north', secret_env: CRMDQ_TEST_ALERT_SECRET, retries: 2, timeout_seconds: 5 }}
    ops: {{ type: webhook, url: 'http://{recv}/ops' }}
  routes:
    pipeline: ops
    managers: {{ mgr.east: east_lead, mgr.north: north_lead, default: ops }}
  rules:
    - {{ name: person_completeness_drop, scope: person, severity: warning, metric: completeness_rate, drop: {{ days: 14, stddevs: 3, min_history: 7 }} }}
    - {{ name: person_timeliness_drop, scope: person, severity: warning, metric: timeliness_rate, drop: {{ days: 14, below_median: 0.3, min_history: 7 }} }}
    - {{ name: team_timeliness_low, scope: team, severity: critical, metric: timeliness_rate, below: 0.9 }}
    # Reads event_time across the record tables (it once queried a pooled view without it).
    - {{ name: stale_events, scope: pipeline, severity: warning, metric: freshness_seconds, above: 8640000 }}
",
            roster = roster.display()
        ),
    )
    .unwrap();
    p
}

/// Ingest and score the month, then evaluate business dates 15..=30, each "the next
/// morning at 10:30" Shanghai time. With `shipped`, the rules are those of
/// `pipelines/crm.yaml`, its webhooks pointed at the receiver. Returns each day's output.
fn month(
    dir: &Path,
    anomalies: bool,
    recv: SocketAddr,
    shipped: bool,
) -> (std::path::PathBuf, Vec<String>) {
    let (input, roster) = data(dir, anomalies);
    let p = if shipped {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/crm.yaml")
    } else {
        pipeline(dir, &roster, recv)
    };
    let w = dir.join("wh");
    let (ps, ws, rs) = (
        p.to_str().unwrap(),
        w.to_str().unwrap(),
        roster.to_str().unwrap(),
    );
    let leads = format!("http://{recv}/leads");
    let ops = format!("http://{recv}/ops");
    let env = [
        ("CRMDQ_TEST_ALERT_SECRET", SECRET),
        ("CRMDQ_ALERT_WEBHOOK", leads.as_str()),
        ("CRMDQ_OPS_WEBHOOK", ops.as_str()),
    ];
    ok(
        &[
            "--now",
            "2026-11-30T00:00:00Z",
            "ingest",
            "--pipeline",
            ps,
            "--warehouse",
            ws,
            input.to_str().unwrap(),
        ],
        &env,
    );
    ok(
        &[
            "--now",
            "2026-11-30T00:00:00Z",
            "score",
            "--pipeline",
            ps,
            "--warehouse",
            ws,
            "--roster",
            rs,
        ],
        &env,
    );
    let start: jiff::civil::Date = "2026-10-01".parse().unwrap();
    let mut outs = Vec::new();
    for day in 15..=30i64 {
        let d = start + jiff::Span::new().days(day - 1);
        let now = format!("{}T10:30:00+08:00", d + jiff::Span::new().days(1));
        let out = ok(
            &[
                "--now",
                &now,
                "alerts",
                "--pipeline",
                ps,
                "--warehouse",
                ws,
                "--roster",
                rs,
                "--date",
                &d.to_string(),
            ],
            &env,
        );
        outs.push(String::from_utf8(out.stdout).unwrap());
    }
    (w, outs)
}

fn events(w: &Path) -> Vec<Value> {
    let out = ok(
        &[
            "sql",
            "--warehouse",
            w.to_str().unwrap(),
            "--format",
            "json",
            "SELECT dt, rule, subject, state, receiver, delivered, manager_id FROM alerts ORDER BY seq, rule, subject",
        ],
        &[],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_stable_month_fires_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&[]);
    // Note: `score` also evaluates (for the latest date), like every scoring run.
    let (w, outs) = month(dir.path(), false, recv, false);
    assert!(events(&w).is_empty(), "{:?}", events(&w));
    assert!(hits.lock().unwrap().is_empty());
    assert!(
        outs.iter().all(|o| o.contains("0 event(s) notified")),
        "{outs:?}"
    );
}

#[test]
fn a_collapse_fires_once_to_the_manager_and_resolves_and_a_breach_repeats_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&["/north"]);
    let (w, _outs) = month(dir.path(), true, recv, false);
    let ev: Vec<(String, String, String, String, String)> = events(&w)
        .iter()
        .map(|e| {
            (
                e["dt"].as_str().unwrap().to_string(),
                e["rule"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
                e["receiver"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let t = |dt: &str, rule: &str, subject: &str, state: &str, to: &str| {
        (
            dt.into(),
            rule.into(),
            subject.into(),
            state.into(),
            to.into(),
        )
    };
    assert_eq!(
        ev,
        vec![
            t(
                "2026-10-20",
                "person_completeness_drop",
                "b.collapse",
                "firing",
                "east_lead"
            ),
            t(
                "2026-10-20",
                "person_timeliness_drop",
                "c.late",
                "firing",
                "north_lead"
            ),
            t(
                "2026-10-20",
                "team_timeliness_low",
                "north",
                "firing",
                "north_lead"
            ),
            t(
                "2026-10-21",
                "person_completeness_drop",
                "b.collapse",
                "resolved",
                "east_lead"
            ),
            // 72 hours after the first notification, still breached: one repeat.
            t(
                "2026-10-23",
                "person_timeliness_drop",
                "c.late",
                "firing",
                "north_lead"
            ),
            t(
                "2026-10-23",
                "team_timeliness_low",
                "north",
                "firing",
                "north_lead"
            ),
            t(
                "2026-10-26",
                "person_timeliness_drop",
                "c.late",
                "resolved",
                "north_lead"
            ),
            t(
                "2026-10-26",
                "team_timeliness_low",
                "north",
                "resolved",
                "north_lead"
            ),
        ],
        "{ev:#?}"
    );
    assert!(events(&w).iter().all(|e| e["delivered"] == true));

    // Deliveries: the collapse went to the east lead, signed, with what dropped, from
    // what baseline to what value, the rules that cost most and example records.
    let hits = hits.lock().unwrap().clone();
    let east: Vec<&Hit> = hits.iter().filter(|h| h.path == "/east").collect();
    assert_eq!(east.len(), 2, "{east:#?}");
    let fire = &east[0];
    let body_bytes = serde_json::to_vec(&fire.body).unwrap();
    assert_eq!(
        fire.headers["x-crmdq-signature"],
        crmdq_alerts::notify::webhook_signature(SECRET, &body_bytes)
    );
    assert_eq!(fire.body["status"], "firing");
    assert_eq!(fire.body["subject"], "b.collapse");
    assert_eq!(fire.body["manager_id"], "mgr.east");
    assert!((fire.body["value"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert!((fire.body["baseline"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    let msg = fire.body["message"].as_str().unwrap();
    assert!(msg.contains("completeness_rate 0.200"), "{msg}");
    assert!(msg.contains("down from its baseline 1.000"), "{msg}");
    assert!(msg.contains("missing.occupation ×8"), "{msg}");
    assert_eq!(
        fire.body["example_records"],
        serde_json::json!(["c638", "c639", "c640"])
    );
    assert_eq!(east[1].body["status"], "resolved");
    // The first delivery to the north lead got a 500 and was retried.
    let north: Vec<&Hit> = hits.iter().filter(|h| h.path == "/north").collect();
    assert_eq!(north.len(), 6 + 1, "{north:#?}");
    assert_eq!(north[0].body, north[1].body);
    // d.few (3 entries a day, collapsing on day 20 too) never fired; nothing went to ops.
    assert!(hits.iter().all(|h| h.body["subject"] != "d.few"));
    assert!(hits.iter().all(|h| h.path != "/ops"));
}

/// The default rules shipped in `pipelines/crm.yaml`: silent on a clean month; on the
/// collapse, the assistant's completeness alert reaches the team leads' webhook once and
/// resolves the next day.
#[test]
fn the_shipped_rules_are_silent_on_a_clean_month_and_catch_the_collapse() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&[]);
    let (w, _) = month(dir.path(), false, recv, true);
    assert!(events(&w).is_empty(), "{:?}", events(&w));
    assert!(hits.lock().unwrap().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let (w, _) = month(dir.path(), true, recv, true);
    let b: Vec<(String, String, String)> = events(&w)
        .iter()
        .filter(|e| e["subject"] == "b.collapse")
        .map(|e| {
            (
                e["dt"].as_str().unwrap().to_string(),
                e["rule"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        b,
        [
            (
                "2026-10-20".into(),
                "completeness_drop".into(),
                "firing".into()
            ),
            (
                "2026-10-21".into(),
                "completeness_drop".into(),
                "resolved".into()
            ),
        ]
    );
    let hits = hits.lock().unwrap().clone();
    assert!(
        hits.iter()
            .any(|h| h.path == "/leads" && h.body["subject"] == "b.collapse")
    );
    assert!(hits.iter().all(|h| h.body["subject"] != "d.few"));
    assert!(hits.iter().all(|h| h.path != "/ops"), "{hits:#?}");
}

/// `score` hands its evaluation the entries it just computed; the example records found in
/// them equal those a standalone evaluation finds by deduplicating the deliveries again.
#[test]
fn examples_from_the_scored_entries_equal_a_fresh_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, _hits) = receiver(&[]);
    let (wh, _) = month(dir.path(), true, recv, false);
    let path = dir.path().join("pipeline.yaml");
    let env = |k: &str| match k {
        "CRMDQ_TEST_ALERT_SECRET" => Some(SECRET.to_string()),
        "CRMDQ_ALERT_WEBHOOK" | "CRMDQ_OPS_WEBHOOK" => Some(format!("http://{recv}/x")),
        _ => None,
    };
    let p =
        crmdq_config::Pipeline::from_str_at(&std::fs::read_to_string(&path).unwrap(), &path, &env)
            .unwrap();
    let roster = dir.path().join("roster.csv");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let w = crmdq_warehouse::Warehouse::open(&wh).unwrap();
        let fresh = crmdq_alerts::EvalOptions {
            date: Some("2026-10-20".parse().unwrap()),
            dry_run: true,
            ..crmdq_alerts::EvalOptions::latest("2026-10-21T02:30:00Z".parse().unwrap())
        };
        let a = crmdq_alerts::evaluate(&p, &w, Some(&roster), &fresh)
            .await
            .unwrap();
        let s = crmdq_score::score_with(
            &p,
            &w,
            Some(&roster),
            "2026-10-21T02:30:00Z".into(),
            &crmdq_score::ScoreOptions {
                entries_of: Some("2026-10-20".into()),
                ..crmdq_score::ScoreOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            s.entries.as_ref().map(|e| e.dt.as_str()),
            Some("2026-10-20")
        );
        let scored = crmdq_alerts::EvalOptions {
            scored_entries: s.entries.clone(),
            ..fresh.clone()
        };
        let b = crmdq_alerts::evaluate(&p, &w, Some(&roster), &scored)
            .await
            .unwrap();
        let examples = |r: &crmdq_alerts::Report| {
            r.events
                .iter()
                .map(|e| (e.rule.clone(), e.subject.clone(), e.example_records.clone()))
                .collect::<Vec<_>>()
        };
        assert!(
            examples(&a).iter().any(|(_, _, x)| !x.is_empty()),
            "{:?}",
            examples(&a)
        );
        assert_eq!(examples(&a), examples(&b));
    });
}
