//! Every notifier against a receiver: a local HTTP server standing in for Slack, WeCom
//! and DingTalk (their request formats, DingTalk's signed URL, retries after a 500, the
//! final failure), a real Prometheus Alertmanager, and `promtool` on the shipped rules.

#![allow(
    clippy::disallowed_methods,
    reason = "a test receiver lives as long as its test runtime"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use crmdq_alerts::{AlertEvent, notify};
use crmdq_config::{Receiver, ReceiverKind};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Recv {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answer 500 this many times first.
    fail: Arc<Mutex<u32>>,
}

async fn handle(
    State(r): State<Recv>,
    uri: Uri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let query = q
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    r.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        query,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    let mut f = r.fail.lock().unwrap();
    if *f > 0 {
        *f -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver(fail: u32) -> (SocketAddr, Recv) {
    let r = Recv {
        hits: Arc::default(),
        fail: Arc::new(Mutex::new(fail)),
    };
    let app = Router::new()
        .route("/{*path}", post(handle))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, r)
}

fn event(state: &str) -> AlertEvent {
    AlertEvent {
        evaluated_at: "2026-10-21T02:30:00Z".into(),
        evaluated_at_us: 1_792_463_400_000_000,
        seq: 1,
        dt: "2026-10-20".into(),
        rule: "person_completeness_drop".into(),
        scope: "person".into(),
        subject: "b.collapse".into(),
        severity: "warning".into(),
        state: state.into(),
        repeat: false,
        metric: "completeness_rate".into(),
        value: Some(0.2),
        baseline: Some(1.0),
        threshold: Some(0.9),
        entries: Some(10),
        team_id: Some("east".into()),
        manager_id: Some("mgr.east".into()),
        receiver: None,
        delivered: false,
        delivery_error: None,
        message: "WARNING person_completeness_drop: b.collapse completeness_rate 0.200".into(),
        top_rules: Some("missing.occupation ×8".into()),
        example_records: vec!["c1".into(), "c2".into()],
        event_id: format!("person_completeness_drop/b.collapse/2026-10-20/{state}"),
        episode: "2026-10-20".into(),
        pending: true,
        basis: String::new(),
    }
}

fn recv(kind: ReceiverKind, url: String, secret: Option<&str>, retries: u32) -> Receiver {
    Receiver {
        name: format!("{kind:?}"),
        kind,
        url,
        secret: secret.map(str::to_string),
        timeout: Duration::from_secs(5),
        retries,
    }
}

#[tokio::test]
async fn slack_wecom_and_dingtalk_formats_and_dingtalk_signature() {
    let (addr, r) = receiver(0).await;
    let client = reqwest::Client::new();
    let e = event("firing");
    notify::deliver(
        &client,
        &recv(ReceiverKind::Slack, format!("http://{addr}/slack"), None, 0),
        &e,
    )
    .await
    .unwrap();
    notify::deliver(
        &client,
        &recv(
            ReceiverKind::Wecom,
            format!("http://{addr}/wecom?key=robot-key"),
            None,
            0,
        ),
        &e,
    )
    .await
    .unwrap();
    notify::deliver(
        &client,
        &recv(
            ReceiverKind::Dingtalk,
            format!("http://{addr}/robot/send?access_token=tok"),
            Some("SEC123"),
            0,
        ),
        &e,
    )
    .await
    .unwrap();
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].path, "/slack");
    assert_eq!(hits[0].body["text"], e.message);
    assert_eq!(hits[1].path, "/wecom");
    assert_eq!(hits[1].query["key"], "robot-key");
    assert_eq!(hits[1].body["msgtype"], "markdown");
    assert!(
        hits[1].body["markdown"]["content"]
            .as_str()
            .unwrap()
            .contains(&e.message)
    );
    let d = &hits[2];
    assert_eq!(d.body["msgtype"], "markdown");
    assert!(
        d.body["markdown"]["title"]
            .as_str()
            .unwrap()
            .contains("person_completeness_drop")
    );
    assert_eq!(d.query["access_token"], "tok");
    // The signature verifies the way DingTalk verifies it.
    let ts: i64 = d.query["timestamp"].parse().unwrap();
    let want = notify::dingtalk_url("http://x/?a=b", "SEC123", ts).unwrap();
    let want: BTreeMap<String, String> = reqwest::Url::parse(&want)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(d.query["sign"], want["sign"]);
    assert!((jiff::Timestamp::now().as_millisecond() - ts).abs() < 60_000);
}

#[tokio::test]
async fn webhook_is_signed_retried_after_500_and_fails_clearly() {
    let (addr, r) = receiver(2).await;
    let client = reqwest::Client::new();
    let e = event("resolved");
    let rc = recv(
        ReceiverKind::Webhook,
        format!("http://{addr}/hook"),
        Some("k3y"),
        3,
    );
    notify::deliver(&client, &rc, &e).await.unwrap();
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3, "two 500s, then delivered");
    let h = &hits[2];
    let body = serde_json::to_vec(&h.body).unwrap();
    assert_eq!(
        h.headers["x-crmdq-signature"].to_str().unwrap(),
        notify::webhook_signature("k3y", &body)
    );
    assert_eq!(h.body["status"], "resolved");
    assert_eq!(h.body["subject"], "b.collapse");
    assert_eq!(h.body["example_records"], serde_json::json!(["c1", "c2"]));

    // Final failure: every attempt fails, the error says why.
    let (addr, r) = receiver(10).await;
    let rc = recv(
        ReceiverKind::Webhook,
        format!("http://{addr}/hook"),
        None,
        2,
    );
    let err = notify::deliver(&client, &rc, &e).await.unwrap_err();
    assert!(err.contains("500"), "{err}");
    assert_eq!(r.hits.lock().unwrap().len(), 3);
    // A refused connection is an error too, not a hang.
    let rc = recv(
        ReceiverKind::Webhook,
        "http://127.0.0.1:9/x".into(),
        None,
        1,
    );
    assert!(notify::deliver(&client, &rc, &e).await.is_err());
}

/// `tool` must be installed: these tests are `#[ignore]`d and run by `.ci/run`, which
/// installs it, so a missing tool fails rather than passes silently.
fn need(tool: &str) {
    assert!(
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "{tool} is not installed (.ci/run installs it)"
    );
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs prometheus-alertmanager; .ci/run installs it and runs the ignored tests"]
async fn a_real_alertmanager_receives_the_alert() {
    need("prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _am = Kill(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{base}/-/ready"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "alertmanager did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rc = recv(ReceiverKind::Alertmanager, base.clone(), None, 2);
    notify::deliver(&client, &rc, &event("firing"))
        .await
        .unwrap();
    let alerts: Value = client
        .get(format!("{base}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "person_completeness_drop")
        .unwrap_or_else(|| panic!("not in Alertmanager: {alerts}"));
    assert_eq!(a["labels"]["subject"], "b.collapse");
    assert_eq!(a["labels"]["manager_id"], "mgr.east");
    assert_eq!(a["labels"]["severity"], "warning");
    // The episode is the label (a resolve carries the same labels); the event id and the
    // business date are annotations.
    assert_eq!(
        a["labels"]["alert_id"],
        "person_completeness_drop/b.collapse/2026-10-20"
    );
    assert!(a["labels"].get("business_date").is_none());
    assert_eq!(
        a["annotations"]["event_id"],
        "person_completeness_drop/b.collapse/2026-10-20/firing"
    );
    assert_eq!(a["status"]["state"], "active");
    assert!(
        a["annotations"]["top_rules"]
            .as_str()
            .unwrap()
            .contains("missing.occupation")
    );
}

#[test]
#[ignore = "needs promtool; .ci/run installs it and runs the ignored tests"]
fn shipped_prometheus_rules_pass_promtool() {
    need("promtool");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker/prometheus");
    for args in [
        ["check", "rules", "crmdq-rules.yml"],
        ["test", "rules", "crmdq-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
