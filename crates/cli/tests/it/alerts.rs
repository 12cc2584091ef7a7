//! Alert scenarios over generated data with the clock under test control (`--now`), each
//! evaluation a separate `crmdq alerts` process (so state survives restarts by design),
//! deliveries checked at a local HTTP receiver (body, HMAC signature, retries after a 500).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::{self, bin};

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
/// morning at 10:30" Shanghai time (the daily job). With `shipped`, the rules are those of
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
    // Scored without alerts: the evaluations below are the daily job's (a `score` with
    // alerts would evaluate every date itself, and the dates after it would be reports).
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
            "--no-alerts",
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
            dates: crmdq_alerts::Dates::On("2026-10-20".parse().unwrap()),
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
                // The date is computed (and its entries kept) only by a full score: an
                // incremental one after nothing new computes no date.
                full: true,
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
        // 2026-10-20 is before the latest evaluated date (10-30): a report, whose events
        // are explained the same way.
        let examples = |r: &crmdq_alerts::Report| {
            assert_eq!(r.report_only, ["2026-10-20"]);
            r.reported
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

// ---------------------------------------------------------------------------------------
// Alerts that stay true: sustained drops, pending delivery, order-safe state and replay.
// ---------------------------------------------------------------------------------------

/// `amy` (an assistant of team east, normally 100% complete) enters `per_day` customers a
/// day from 2026-10-01 for `days` days, `bad(day)` of them without occupation, age and
/// phone; `ben` (same team) enters 13 complete ones a day. Returns (input, roster).
fn assistant(
    dir: &Path,
    days: i64,
    per_day: usize,
    bad: &dyn Fn(i64) -> usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let roster = dir.join("roster.csv");
    std::fs::write(
        &roster,
        "person_id,name,role,team_id,manager_id,valid_from,valid_to\n\
         amy,Amy,sales_assistant,east,mgr.east,2026-01-01,\n\
         ben,Ben,sales_assistant,east,mgr.east,2026-01-01,\n",
    )
    .unwrap();
    let start: jiff::civil::Date = "2026-10-01".parse().unwrap();
    let mut lines = Vec::new();
    let mut n = 0u64;
    for day in 1..=days {
        let d = start + jiff::Span::new().days(day - 1);
        for (person, count, bad) in [("amy", per_day, bad(day)), ("ben", 13, 0)] {
            for i in 0..count {
                n += 1;
                let mut r = serde_json::json!({
                    "record_type": "customer",
                    "record_id": format!("c{n}"),
                    "owner_id": person,
                    "entered_by": person,
                    "team_id": "east",
                    "event_time": format!("{d} 09:00:00"),
                    "entered_at": format!("{d} 18:00:00"),
                    "phone": format!("1382{:07}", (n * 104_729) % 10_000_000),
                    "occupation": "teacher",
                    "age": 30 + (n % 20),
                });
                if i < bad {
                    for f in ["phone", "occupation", "age"] {
                        r.as_object_mut().unwrap().remove(f);
                    }
                }
                lines.push(r.to_string());
            }
        }
    }
    let input = dir.join("crm.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    (input, roster)
}

fn shipped() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/crm.yaml")
}

/// The morning after business date `day` (1 = 2026-10-01), 10:30 Shanghai time.
fn morning_after(day: i64) -> String {
    let d: jiff::civil::Date = "2026-10-01".parse().unwrap();
    format!("{}T10:30:00+08:00", d + jiff::Span::new().days(day))
}

fn date(day: i64) -> String {
    let d: jiff::civil::Date = "2026-10-01".parse().unwrap();
    (d + jiff::Span::new().days(day - 1)).to_string()
}

/// Ingest `input` into a new warehouse `dir/name` and score it (`score_args` appended).
fn ingest_and_score(
    dir: &Path,
    name: &str,
    pipeline: &Path,
    input: &Path,
    roster: &Path,
    score_args: &[&str],
    env: &[(&str, &str)],
) -> std::path::PathBuf {
    let w = dir.join(name);
    let common = [
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
    ];
    let mut args = vec!["--now", "2026-11-30T00:00:00Z", "ingest"];
    args.extend(common);
    args.push(input.to_str().unwrap());
    ok(&args, env);
    let mut args = vec!["--now", "2026-11-30T00:00:00Z", "score"];
    args.extend(common);
    args.extend(["--roster", roster.to_str().unwrap()]);
    args.extend(score_args);
    ok(&args, env);
    w
}

/// The daily job on the shipped pipeline: ingest and score without alerts into
/// `dir/name`, then `crmdq alerts --date D` the morning after each day of `days`.
fn evaluated_daily(
    dir: &Path,
    name: &str,
    (input, roster): (&Path, &Path),
    days: std::ops::RangeInclusive<i64>,
    env: &[(&str, &str)],
) -> std::path::PathBuf {
    let p = shipped();
    let w = ingest_and_score(dir, name, &p, input, roster, &["--no-alerts"], env);
    for day in days {
        alerts(
            &w,
            &p,
            roster,
            &morning_after(day),
            &["--date", &date(day)],
            env,
        );
    }
    w
}

/// `crmdq alerts` on warehouse `w` at `now` with `extra` arguments; its stdout.
fn alerts(
    w: &Path,
    pipeline: &Path,
    roster: &Path,
    now: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut args = vec![
        "--now",
        now,
        "alerts",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
    ];
    args.extend(extra);
    String::from_utf8(ok(&args, env).stdout).unwrap()
}

fn sql(w: &Path, query: &str) -> Vec<Value> {
    let out = ok(
        &[
            "sql",
            "--warehouse",
            w.to_str().unwrap(),
            "--format",
            "json",
            query,
        ],
        &[],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The person and team events as comparable text: date, rule, subject, state, repeat,
/// event id, value, baseline, threshold.
fn transitions(w: &Path) -> Vec<String> {
    sql(
        w,
        "SELECT dt, rule, subject, state, repeat, event_id, value, baseline, threshold \
         FROM alerts WHERE scope <> 'pipeline' ORDER BY dt, seq, rule, subject",
    )
    .iter()
    .map(|e| {
        format!(
            "{} {} {} {}{} {} value={} baseline={} threshold={}",
            e["dt"].as_str().unwrap(),
            e["rule"].as_str().unwrap(),
            e["subject"].as_str().unwrap(),
            e["state"].as_str().unwrap(),
            if e["repeat"] == true { " (repeat)" } else { "" },
            e["event_id"].as_str().unwrap(),
            e["value"],
            e["baseline"],
            e["threshold"],
        )
    })
    .collect()
}

/// The reported defect, with the shipped rules evaluated day by day: amy stops entering
/// occupation, age and phone on day 10 (completeness 0.000 until day 16) and recovers on
/// day 17. `completeness_drop` fires on day 10, repeats once a day (24 h) while she stays
/// at 0 — it used to resolve on day 12, once the collapsed days had entered her baseline —
/// and resolves on the first recovered day. A date evaluated again after a later one is a
/// report and changes nothing.
#[test]
fn a_sustained_collapse_keeps_firing_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&[]);
    let (input, roster) = assistant(dir.path(), 20, 13, &|d| {
        if (10..=16).contains(&d) { 13 } else { 0 }
    });
    let leads = format!("http://{recv}/leads");
    let env = [("CRMDQ_ALERT_WEBHOOK", leads.as_str())];
    let p = shipped();
    let w = evaluated_daily(dir.path(), "wh", (&input, &roster), 1..=20, &env);
    let amy: Vec<Value> = sql(
        &w,
        "SELECT dt, state, repeat, value, baseline, message, event_id, delivered FROM alerts \
         WHERE rule = 'completeness_drop' AND subject = 'amy' ORDER BY seq",
    );
    let got: Vec<(String, String, bool)> = amy
        .iter()
        .map(|e| {
            (
                e["dt"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
                e["repeat"] == true,
            )
        })
        .collect();
    // The day-by-day list, for whoever reads the test's output (`--nocapture`).
    for e in &amy {
        println!("{}", e["message"].as_str().unwrap().lines().next().unwrap());
    }
    let mut want = vec![(date(10), "firing".to_string(), false)];
    want.extend((11..=16).map(|d| (date(d), "firing".to_string(), true)));
    want.push((date(17), "resolved".to_string(), false));
    assert_eq!(got, want, "{amy:#?}");
    for e in &amy {
        assert_eq!(e["delivered"], true);
        assert_eq!(e["baseline"], 1.0, "{e}");
        let m = e["message"].as_str().unwrap();
        // The message names the pre-episode window.
        assert!(
            m.contains("baseline 2026-09-26–2026-10-09, 9 scored day(s)"),
            "{m}"
        );
    }
    assert!(
        amy[3]["message"]
            .as_str()
            .unwrap()
            .contains("as before this episode began on 2026-10-10")
    );
    assert!(amy[0]["event_id"] == "completeness_drop/amy/2026-10-10/firing");
    assert!(amy[7]["event_id"] == "completeness_drop/amy/2026-10-10/resolved");
    // Each event reached the team leads' webhook once, with its id.
    let seen = hits.lock().unwrap().clone();
    let sent: Vec<&str> = seen
        .iter()
        .filter(|h| h.body["subject"] == "amy")
        .map(|h| h.body["event_id"].as_str().unwrap())
        .collect();
    let ids: Vec<&str> = amy
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(sent, ids);

    // Day 12 again, after day 20: a report; no state change, nothing sent.
    let before = transitions(&w);
    let out = alerts(
        &w,
        &p,
        &roster,
        "2026-10-22T10:30:00+08:00",
        &["--date", &date(12)],
        &env,
    );
    assert!(out.contains("a report only"), "{out}");
    assert!(
        out.contains("would have: WARNING completeness_drop (still firing): amy"),
        "{out}"
    );
    assert_eq!(transitions(&w), before);
    assert_eq!(hits.lock().unwrap().len(), seen.len());
}

/// A slow decline, 5 points a day for 8 days from day 15: fires once it crosses the
/// threshold of its pre-decline baseline and stays firing, never resolving while it
/// declines.
#[test]
fn a_slow_decline_fires_and_stays_firing() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, _hits) = receiver(&[]);
    let (input, roster) = assistant(dir.path(), 22, 20, &|d| (d - 14).max(0) as usize);
    let leads = format!("http://{recv}/leads");
    let env = [("CRMDQ_ALERT_WEBHOOK", leads.as_str())];
    let w = evaluated_daily(dir.path(), "wh", (&input, &roster), 14..=22, &env);
    let amy = sql(
        &w,
        "SELECT dt, state, repeat, value, threshold FROM alerts \
         WHERE rule = 'completeness_drop' AND subject = 'amy' ORDER BY seq",
    );
    assert!(!amy.is_empty(), "a 40-point decline must fire");
    assert_eq!(amy[0]["state"], "firing");
    assert_eq!(amy[0]["repeat"], false);
    assert!(amy[0]["value"].as_f64() < amy[0]["threshold"].as_f64());
    let first: jiff::civil::Date = amy[0]["dt"].as_str().unwrap().parse().unwrap();
    // A 15-point drop (day 17, 0.85) is within the shipped min_drop of 0.15: not yet.
    assert!(first > date(17).parse().unwrap(), "{amy:#?}");
    for (i, e) in amy.iter().enumerate().skip(1) {
        assert_eq!(e["state"], "firing", "{amy:#?}");
        assert_eq!(e["repeat"], true);
        assert_eq!(
            e["dt"].as_str().unwrap(),
            (first + jiff::Span::new().days(i as i64)).to_string()
        );
    }
    assert_eq!(amy.last().unwrap()["dt"], date(22));
}

/// The shipped pipeline with its receivers off (no webhook variables): `score` records the
/// collapse as pending; `alerts --webhook URL` then delivers it, once; nothing is sent
/// again by a later run. `check-config` warns that the receivers are off.
#[test]
fn pending_events_reach_the_webhook_once() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&[]);
    let (input, roster) = assistant(dir.path(), 12, 13, &|d| if d >= 10 { 13 } else { 0 });
    let p = shipped();
    let out = ok(&["check-config", "--pipeline", p.to_str().unwrap()], &[]);
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains("warning") && warn.contains("alerts.routes.managers"),
        "{warn}"
    );
    assert!(warn.contains("`team_leads` disabled"), "{warn}");

    let w = ingest_and_score(dir.path(), "wh", &p, &input, &roster, &[], &[]);
    let pending = sql(
        &w,
        "SELECT event_id, rule, subject, dt, repeat FROM alerts WHERE pending ORDER BY event_id",
    );
    // The catch-up replay of days 1–12 records the episode (fire on day 10, repeats on 11
    // and 12); only its latest event is for delivery, and with no receiver it waits.
    let ids: Vec<&str> = pending
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"completeness_drop/amy/2026-10-10/repeat-2026-10-12"),
        "{ids:?}"
    );
    assert!(
        !ids.iter()
            .any(|i| i.ends_with("/firing") && i.contains("/amy/")),
        "{ids:?}"
    );
    assert!(hits.lock().unwrap().is_empty());

    let hook = format!("http://{recv}/hook");
    let now = morning_after(12);
    let out = alerts(&w, &p, &roster, &now, &["--webhook", &hook], &[]);
    assert!(
        out.contains(&format!(
            "{} earlier event(s) delivered now, 0 pending",
            ids.len()
        )),
        "{out}"
    );
    let got: Vec<String> = {
        let h = hits.lock().unwrap();
        let mut v: Vec<String> = h
            .iter()
            .map(|h| h.body["event_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(got, ids);
    // Again: nothing new, nothing pending.
    let out = alerts(&w, &p, &roster, &now, &["--webhook", &hook], &[]);
    assert!(
        out.contains("0 earlier event(s) delivered now, 0 pending"),
        "{out}"
    );
    assert_eq!(hits.lock().unwrap().len(), ids.len());
}

/// A receiver that fails for two runs then recovers: the event is offered by each run and
/// delivered once; `alert_deliveries` records how it ended.
#[test]
fn a_failing_receiver_gets_the_event_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&["/flaky", "/flaky"]);
    let (input, roster) = assistant(dir.path(), 12, 13, &|d| if d >= 10 { 13 } else { 0 });
    let p = dir.path().join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "roster: {}
alerts:
  receivers:
    lead: {{ type: webhook, url: 'http://{recv}/flaky', retries: 0 }}
  routes: {{ managers: {{ default: lead }} }}
  rules:
    - {{ name: completeness_drop, scope: person, metric: completeness_rate, drop: {{ days: 14, stddevs: 3, min_drop: 0.15, min_history: 7 }} }}
",
            roster.display()
        ),
    )
    .unwrap();
    let w = ingest_and_score(dir.path(), "wh", &p, &input, &roster, &[], &[]);
    let now = morning_after(12);
    let first = alerts(&w, &p, &roster, &now, &[], &[]);
    assert!(
        first.contains("0 earlier event(s) delivered now, 1 pending"),
        "{first}"
    );
    let second = alerts(&w, &p, &roster, &now, &[], &[]);
    assert!(
        second.contains("1 earlier event(s) delivered now, 0 pending"),
        "{second}"
    );
    let third = alerts(&w, &p, &roster, &now, &[], &[]);
    assert!(
        third.contains("0 earlier event(s) delivered now, 0 pending"),
        "{third}"
    );
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3, "{hits:#?}");
    assert!(
        hits.iter()
            .all(|h| h.body["event_id"] == "completeness_drop/amy/2026-10-10/repeat-2026-10-12")
    );
    let attempts: Vec<String> = sql(&w, "SELECT outcome FROM alert_deliveries ORDER BY seq")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts, ["delivered"]);
    let first_error = sql(
        &w,
        "SELECT delivered, pending, delivery_error FROM alerts ORDER BY seq",
    );
    assert_eq!(first_error.len(), 3, "{first_error:?}");
    assert!(first_error.iter().all(|e| e["delivered"] == false));
    let last = &first_error[2];
    assert_eq!(last["pending"], true);
    assert!(
        last["delivery_error"].as_str().unwrap().contains("500"),
        "{last}"
    );
}

/// A backfill replayed with `--from/--to` equals the daily cadence event for event, and so
/// does `score`'s own catch-up; `--deliver open` sends only what is open at the end.
#[test]
fn a_replay_equals_the_daily_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let (recv, hits) = receiver(&[]);
    let (input, roster) = assistant(dir.path(), 20, 13, &|d| {
        if (10..=16).contains(&d) { 13 } else { 0 }
    });
    let daily_hook = format!("http://{recv}/daily");
    let p = shipped();
    let env = [("CRMDQ_ALERT_WEBHOOK", daily_hook.as_str())];
    let daily = evaluated_daily(dir.path(), "daily", (&input, &roster), 1..=20, &env);
    let replay_hook = format!("http://{recv}/replay");
    let env = [("CRMDQ_ALERT_WEBHOOK", replay_hook.as_str())];
    let replay = ingest_and_score(
        dir.path(),
        "replay",
        &p,
        &input,
        &roster,
        &["--no-alerts"],
        &env,
    );
    let out = alerts(
        &replay,
        &p,
        &roster,
        &morning_after(20),
        &["--from", &date(1), "--to", &date(20), "--deliver", "all"],
        &env,
    );
    assert!(
        out.contains("business dates 2026-10-01 to 2026-10-20"),
        "{out}"
    );
    let open_hook = format!("http://{recv}/open");
    let env = [("CRMDQ_ALERT_WEBHOOK", open_hook.as_str())];
    let catch_up = ingest_and_score(dir.path(), "catch_up", &p, &input, &roster, &[], &env);

    let want = transitions(&daily);
    assert!(want.len() >= 9, "{want:#?}");
    assert_eq!(transitions(&replay), want);
    assert_eq!(transitions(&catch_up), want);
    let hits = hits.lock().unwrap().clone();
    let sent = |path: &str| -> Vec<String> {
        hits.iter()
            .filter(|h| h.path == path)
            .map(|h| h.body["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sent("/replay"), sent("/daily"));
    assert_eq!(sent("/daily").len(), want.len());
    // Every episode closed by day 20: an open-only replay sends nothing, and nothing is
    // left pending.
    assert!(sent("/open").is_empty(), "{:?}", sent("/open"));
    assert!(sql(&catch_up, "SELECT event_id FROM alerts WHERE pending").is_empty());
}

/// A `period: month` rule watches `person_period`: on each date the judged row of the
/// month containing it (the review fixture: rita's December check-in response rate is
/// 0.667, her January has no check-ins).
#[test]
fn a_period_rule_watches_the_month() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::fixtures().join("review");
    let p = dir.path().join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "roster: {roster}\nabsences: {absences}\nreview: {{min_volume: 2}}\nalerts:\n  rules:\n    - {{ name: month-checkins, scope: person, metric: checkin_response_rate, below: 0.9, period: month, min_entries: 1 }}\n",
            roster = f.join("roster.csv").display(),
            absences = f.join("absences.csv").display(),
        ),
    )
    .unwrap();
    let w = dir.path().join("wh");
    let (p_s, w_s) = (p.to_str().unwrap(), w.to_str().unwrap());
    let now = "2027-01-06T12:00:00+08:00";
    common::ingest_and_score(now, &p, &w, &f.join("review.ndjson"), &["--no-alerts"]);
    let alerts = |date: &str| {
        let out = common::run(&[
            "--now",
            now,
            "alerts",
            "--pipeline",
            p_s,
            "--warehouse",
            w_s,
            "--dry-run",
            "--date",
            date,
        ]);
        String::from_utf8(out.stdout).unwrap()
    };
    let december = alerts("2026-12-31");
    assert!(
        december.contains("rita")
            && december.contains("checkin_response_rate 0.667")
            && december.contains("over the month containing 2026-12-31"),
        "{december}"
    );
    let january = alerts("2027-01-05");
    assert!(!january.contains("rita"), "{january}");
}
