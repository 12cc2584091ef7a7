//! `serve` and `run` started in process as values (`crmdq_serve::Server`,
//! `crmdq::app::RunApp`) on port 0, the way the binary starts them: each answers on the
//! address it reports, and each mounts only its own routes (the JSON API is `serve`'s;
//! `run --http-listen` has the probes only).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crmdq_config::{Overrides, Pipeline};
use crmdq_warehouse::Warehouse;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common;
use common::http_get;

fn pipeline(w: &Path) -> Pipeline {
    Pipeline::load_with(
        &common::fixtures().join("pipeline.yaml"),
        &Overrides {
            warehouse: Some(w.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

/// GET on a blocking thread (the client is std's TcpStream).
async fn get(addr: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path, Some(("u", "pw"))))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_run_start_in_process_on_port_0_with_their_own_routes() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    common::ingest(&w, &[&common::fixtures().join("small.ndjson")]);
    common::score(&w);
    let mut p = pipeline(&w);
    // Credentials as the environment would give them (`sql.user`, `sql.password`).
    p.serve.user = Some("u".into());
    p.serve.password = Some("pw".into());
    let any = "127.0.0.1:0".parse().unwrap();
    let tasks = TaskTracker::new();

    // serve: SQL and HTTP bound before it runs; the JSON API answers.
    let server = crmdq_serve::Server::build(
        &p,
        Warehouse::open(&w).unwrap(),
        &crmdq_serve::ServeOptions {
            pg_listen: any,
            http_listen: any,
            roster: p.roster_path().map(Path::to_path_buf),
        },
    )
    .await
    .unwrap();
    let (pg, http) = (server.pg_addr(), server.http_addr());
    assert!(pg.port() != 0 && http.port() != 0 && pg != http);
    let stop = CancellationToken::new();
    let served = tasks.spawn(server.run_until_stopped(stop.clone()));
    let (code, body) = get(http, "/api/v1/dates").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("2026-11-"), "{body}");
    assert_eq!(get(http, "/readyz").await.0, 200);
    // The review: the latest week's person_period rows, judged first.
    let (code, body) = get(http, "/api/v1/review/people?period_kind=week").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["period"], "2026-W48", "{body}");
    let people: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["person_id"].as_str().unwrap())
        .collect();
    assert_eq!(people.len(), 4, "{body}");
    let (code, body) = get(http, "/api/v1/review/teams?period_kind=year").await;
    assert_eq!(code, 400, "{body}");
    stop.cancel();
    served.await.unwrap();

    // run: the probes only, on a consumer of an in-process mock cluster.
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("crm.records", 1, 1).unwrap();
    let app = crmdq::app::RunApp::build(p, Some(cluster.bootstrap_servers()), false, Some(any))
        .await
        .unwrap();
    let http = app.http_addr().unwrap();
    assert_ne!(http.port(), 0);
    let stop = CancellationToken::new();
    let clock: Arc<dyn crmdq_pipeline::Clock> = Arc::new(crmdq_pipeline::SystemClock);
    let running = {
        let stop = stop.clone();
        tasks.spawn(async move { app.run_until_stopped(clock.as_ref(), stop).await })
    };
    assert_eq!(get(http, "/healthz").await.0, 200);
    let (code, body) = get(http, "/api/v1/dates").await;
    assert_eq!(code, 404, "run mounts no JSON API: {body}");
    // Readiness is run's own (partitions, broker, lag, …), not serve's.
    let (_, ready) = get(http, "/readyz").await;
    assert!(
        ready.contains("consuming") && ready.contains("lag_under_bound"),
        "{ready}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let summary = running.await.unwrap().unwrap();
    assert_eq!(summary.messages, 0);
    tasks.close();
    tasks.wait().await;
}
