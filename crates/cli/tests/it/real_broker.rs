//! Delivery guarantees against a real Kafka-protocol broker (tansu with sqlite storage,
//! installed by `.ci/run`), driving the `crmdq` binary as an operator would: SIGKILL at
//! random moments, two and three instances in one group started and stopped mid-stream,
//! the broker gone for 30 s, and hostile messages up to the broker's largest fetch. The assertion each time is
//! the offset accounting — every offset below each partition's high watermark is in the
//! warehouse exactly once, as a record row or a dead letter — and, where the data is the
//! generated CRM stream, scores equal to a clean ingest of the same lines.
//!
//! Outside `.ci/run` (no `CI` in the environment) the tests skip with a message when the
//! tansu binary is missing; under CI a missing broker is a failure.

use crate::common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{NOW, http_get, sql};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

const TOPIC: &str = "crm.records";
const PARTITIONS: i32 = 3;

/// One real-broker test at a time: they start brokers and several crmdq processes, and
/// timing-sensitive steps (session timeouts, outages) should not compete for two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRMDQ_TANSU") {
        return Some(PathBuf::from(p));
    }
    let cached = PathBuf::from(std::env::var_os("HOME")?).join(".cache/tansu/bin/tansu");
    if cached.exists() {
        return Some(cached);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The tansu binary: the tests that need it are `#[ignore]`d and run by `.ci/run`, which
/// builds it, so a missing broker fails rather than passes silently.
fn need_tansu(test: &str) -> PathBuf {
    tansu().unwrap_or_else(|| {
        panic!("{test}: tansu is not installed (.ci/run builds it into ~/.cache/tansu)")
    })
}

/// The common start of a tansu test: the broker binary, the lock that runs real-broker
/// tests one at a time, generated data and a started broker with the topic.
fn on_tansu(
    test: &str,
    days: u32,
    people: u32,
) -> (std::sync::MutexGuard<'static, ()>, Setup, Broker) {
    let bin = need_tansu(test);
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup(days, people);
    let broker = Broker::start(bin, s.dir.path());
    broker.create_topic(TOPIC, PARTITIONS);
    (serial, s, broker)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker on loopback with sqlite storage in its own folder.
struct Broker {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(bin: PathBuf, dir: &Path) -> Broker {
        let mut b = Broker {
            bin,
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        b.up();
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                // Relative to the working directory (tansu's sqlite URLs are).
                "--storage-engine",
                "sqlite://broker.db",
            ])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let addr: SocketAddr = self.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr()),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What the tests need of a broker: tansu, or librdkafka's mock cluster (in this process,
/// reached over TCP by the `crmdq` processes like any broker).
trait Kafka {
    fn addr(&self) -> String;
    fn log(&self) -> String {
        String::new()
    }
    /// Each partition's high watermark.
    fn high_watermarks(&self, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .unwrap();
        (0..partitions)
            .map(|p| {
                c.fetch_watermarks(TOPIC, p, Duration::from_secs(20))
                    .unwrap()
                    .1
            })
            .collect()
    }
}

impl Kafka for Broker {
    fn addr(&self) -> String {
        Broker::addr(self)
    }
    fn log(&self) -> String {
        Broker::log(self)
    }
}

struct Mock(rdkafka::mocking::MockCluster<'static, DefaultProducerContext>);

impl Mock {
    fn start() -> Mock {
        let m = rdkafka::mocking::MockCluster::new(1).unwrap();
        m.create_topic(TOPIC, PARTITIONS, 1).unwrap();
        Mock(m)
    }
}

impl Kafka for Mock {
    fn addr(&self) -> String {
        self.0.bootstrap_servers()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "16000000")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap()
}

/// Produce (payload, key) pairs and wait until the broker acknowledged them all.
/// A message to produce: (payload, key).
type Msg = (Option<Vec<u8>>, Option<Vec<u8>>);

fn produce(brokers: &str, msgs: &[Msg]) {
    let p = producer(brokers);
    for (payload, key) in msgs {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(TOPIC);
        if let Some(pl) = payload {
            r = r.payload(pl);
        }
        if let Some(k) = key {
            r = r.key(k);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(5));
                    r = back;
                }
            }
        }
    }
    p.flush(Duration::from_mins(2)).unwrap();
}

fn produce_lines(brokers: &str, lines: &[String], first_key: usize) {
    let msgs: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                Some(l.as_bytes().to_vec()),
                Some((first_key + i).to_string().into_bytes()),
            )
        })
        .collect();
    produce(brokers, &msgs);
}

/// A folder with generated CRM lines, their roster and a pipeline for `broker`, and the
/// warehouse: a folder in it, or (with [`Setup::on_s3`]) a bucket on a local S3 server.
struct Setup {
    dir: tempfile::TempDir,
    lines: Vec<String>,
    pipeline: PathBuf,
    /// A folder, or an `s3://` URL.
    warehouse: String,
    /// What every crmdq process of the test gets in its environment (S3 credentials).
    env: Vec<(String, String)>,
    /// The S3 server of an object-store warehouse.
    moto: Option<common::Moto>,
}

fn setup(days: u32, people: u32) -> Setup {
    setup_with(days, people, "")
}

/// [`setup`] with extra librdkafka properties (YAML lines under `properties:`).
fn setup_with(days: u32, people: u32, properties: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("CRMDQ_KEEP_TEST_DIRS").is_some() {
        eprintln!("test folder: {}", dir.path().display());
    }
    let gen_path = dir.path().join("gen.ndjson");
    common::run(&[
        "generate",
        "--out",
        gen_path.to_str().unwrap(),
        "--days",
        &days.to_string(),
        "--people",
        &people.to_string(),
        "--start",
        "2026-11-01",
        "--seed",
        "7",
    ]);
    let lines = std::fs::read_to_string(&gen_path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!("name: real-broker\nroster: gen.ndjson.roster.csv\nsource:\n  kafka:\n    group_id: crmdq-real\n    topics:\n      crm.records: ~\n    commit_interval_seconds: 0.5\n    properties:\n      session.timeout.ms: \"6000\"\n      heartbeat.interval.ms: \"1000\"\n      max.poll.interval.ms: \"10000\"\n{properties}")
    )
    .unwrap();
    Setup {
        warehouse: dir.path().join("wh").to_str().unwrap().to_string(),
        env: Vec::new(),
        moto: None,
        dir,
        lines,
        pipeline,
    }
}

/// [`setup`] with the warehouse in a bucket of a local S3 server (moto): the endpoint
/// comes from the pipeline file (`storage_options` with `${VAR}`s), the credentials from
/// the standard environment variables, as an operator would set them.
fn setup_on_s3(days: u32, people: u32) -> Setup {
    let mut s = setup(days, people);
    let moto = common::Moto::start_server();
    moto.bucket("crmdq-faults");
    let mut text = std::fs::read_to_string(&s.pipeline).unwrap();
    text.push_str(
        "warehouse:\n  path: s3://crmdq-faults/wh\n  storage_options:\n    aws_endpoint: ${MOTO_ENDPOINT}\n    aws_allow_http: \"true\"\n",
    );
    std::fs::write(&s.pipeline, text).unwrap();
    s.env = moto.env();
    s.env.push(("MOTO_ENDPOINT".into(), moto.endpoint()));
    s.warehouse = "s3://crmdq-faults/wh".into();
    s.moto = Some(moto);
    s
}

impl Drop for Setup {
    fn drop(&mut self) {
        if std::env::var_os("CRMDQ_KEEP_TEST_DIRS").is_some() {
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let _ = d.keep();
        }
    }
}

impl Setup {
    /// `crmdq run` in the background (its output in `run-N.log`).
    fn spawn_run(&self, kafka: &dyn Kafka, n: usize, extra: &[&str]) -> Proc {
        let log = std::fs::File::create(self.dir.path().join(format!("run-{n}.log"))).unwrap();
        // Each instance in its own working folder: what they share is the warehouse.
        let work = self.dir.path().join(format!("work-{n}"));
        std::fs::create_dir_all(&work).unwrap();
        Command::new(env!("CARGO_BIN_EXE_crmdq"))
            .current_dir(&work)
            .args([
                "--now",
                NOW,
                "run",
                "--pipeline",
                self.pipeline.to_str().unwrap(),
                "--warehouse",
                &self.warehouse,
                "--brokers",
                &kafka.addr(),
            ])
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CRMDQ_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Proc)
            .unwrap()
    }

    /// `crmdq run --until-caught-up`; it must exit 0.
    fn catch_up(&self, broker: &dyn Kafka) {
        let mut c = self.spawn_run(broker, 99, &["--until-caught-up"]);
        let Some(status) = wait_timeout(&mut c.0, Duration::from_mins(2)) else {
            let log = self.run_log(99);
            let tail: String = log
                .chars()
                .rev()
                .take(60000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "the catch-up run did not end within 120 s:\n{tail}\nbroker log:\n{}",
                broker.log().chars().take(4000).collect::<String>()
            );
        };
        assert!(status.success(), "catch-up run: {}", self.run_log(99));
    }

    /// Wait until run `n` has been assigned partitions: the group has changed (a fixed
    /// pause was not always enough on a loaded machine, and the next step then ran with
    /// fewer instances than it meant to).
    fn wait_joined(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.run_log(n).contains("partition assigned") {
            assert!(
                Instant::now() < deadline,
                "run {n} never got a partition; its log:\n{}",
                self.run_log(n)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("run-{n}.log"))).unwrap_or_default()
    }

    /// `crmdq sql` on this warehouse.
    fn sql(&self, q: &str) -> Vec<Value> {
        common::sql_env(&self.warehouse, q, &self.env)
    }

    /// Rows in the warehouse (records + dead letters).
    fn committed(&self) -> i64 {
        if self.moto.is_none() && !Path::new(&self.warehouse).exists() {
            return 0;
        }
        let out = common::bin()
            .args(["sql", "--warehouse", &self.warehouse, "--format", "json"])
            .arg(format!("SELECT COUNT(*) AS n FROM ({UNION})"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        if !out.status.success() {
            // Nothing committed yet (no warehouse), or, on S3, the server is stopped.
            return 0;
        }
        let row: Value = serde_json::from_slice(&out.stdout).unwrap();
        row["n"].as_i64().unwrap()
    }

    fn wait_committed(&self, want: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.committed();
            if got >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {got} of {want} rows committed; last run log:\n{}",
                self.run_log(0)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// (lost, doubled): offsets below the high watermarks missing from the warehouse, and
    /// extra copies of those present.
    fn lost_and_doubled(&self, broker: &dyn Kafka) -> (i64, i64) {
        let rows = self.sql(&format!(
            "SELECT src_partition AS p, src_offset AS o, COUNT(*) AS n FROM ({UNION}) GROUP BY 1, 2"
        ));
        let mut got: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for r in &rows {
            got.insert(
                (r["p"].as_i64().unwrap(), r["o"].as_i64().unwrap()),
                r["n"].as_i64().unwrap(),
            );
        }
        // An outside reader of the Delta tables sees exactly the same deliveries.
        assert_eq!(
            self.delta_deliveries(),
            got,
            "the Delta tables hold exactly what crmdq reads"
        );
        let (mut lost, mut doubled) = (0, 0);
        for (p, high) in broker.high_watermarks(PARTITIONS).into_iter().enumerate() {
            let mut missing = Vec::new();
            for o in 0..high {
                match got.remove(&(p as i64, o)).unwrap_or(0) {
                    0 => {
                        lost += 1;
                        missing.push(o);
                    }
                    n => doubled += n - 1,
                }
            }
            if !missing.is_empty() {
                eprintln!(
                    "partition {p} (high watermark {high}): {} offsets missing, first {:?}, last {:?}",
                    missing.len(),
                    missing.first(),
                    missing.last()
                );
            }
        }
        // Anything left has a position the broker never handed out.
        (lost, doubled + got.values().sum::<i64>())
    }

    /// (partition, offset) → copies, read through the Delta logs of the record tables and
    /// `dead_letters` by delta-rs and the Parquet reader (as another engine would).
    fn delta_deliveries(&self) -> BTreeMap<(i64, i64), i64> {
        use arrow::array::Array as _;
        let mut got = BTreeMap::new();
        let dirs = [
            "records/customer",
            "records/activity",
            "records/service_ticket",
            "records/opportunity",
            "records/order",
            "records/checkin",
            "dead_letters",
        ];
        let at = match &self.moto {
            Some(m) => m.location(&self.warehouse),
            None => crmdq_warehouse::Location::from(Path::new(&self.warehouse)),
        };
        for dir in dirs {
            let Some((files, w)) = common::delta_live_files_at(&at, dir) else {
                continue;
            };
            for (path, _) in files {
                let bytes = common::warehouse_bytes(&w, &format!("{dir}/{path}"));
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap()
                        .build()
                        .unwrap();
                for b in reader {
                    let b = b.unwrap();
                    let p = arrow::compute::cast(
                        b.column_by_name("src_partition").unwrap(),
                        &arrow::datatypes::DataType::Int64,
                    )
                    .unwrap();
                    let o = arrow::compute::cast(
                        b.column_by_name("src_offset").unwrap(),
                        &arrow::datatypes::DataType::Int64,
                    )
                    .unwrap();
                    let (p, o) = (
                        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&p),
                        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&o),
                    );
                    for i in 0..b.num_rows() {
                        if p.is_valid(i) && o.is_valid(i) {
                            *got.entry((p.value(i), o.value(i))).or_default() += 1;
                        }
                    }
                }
            }
        }
        got
    }

    /// Scores of this warehouse and of a clean file ingest of the same lines.
    fn scores_match_a_clean_ingest(&self) {
        let clean = self.dir.path().join("clean");
        let file = self.dir.path().join("gen.ndjson");
        let p = self.pipeline.to_str().unwrap();
        common::run_env(
            &[
                "--now",
                NOW,
                "ingest",
                "--pipeline",
                p,
                "--warehouse",
                clean.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            &self.env,
        );
        let q = "SELECT CAST(dt AS VARCHAR) AS dt, person_id, role, team_id, entries, completeness_rate, validity_rate, timeliness_rate, score FROM person_daily ORDER BY dt, person_id, role";
        let mut out = Vec::new();
        for w in [clean.to_str().unwrap(), &self.warehouse] {
            common::run_env(
                &["--now", NOW, "score", "--pipeline", p, "--warehouse", w],
                &self.env,
            );
            out.push(common::sql_env(w, q, &self.env));
        }
        assert!(out[0].len() > 20, "scores exist: {}", out[0].len());
        assert_eq!(out[1], out[0], "scores equal a clean ingest");
    }
}

const UNION: &str = "SELECT src_partition, src_offset FROM customer UNION ALL SELECT src_partition, src_offset FROM activity UNION ALL SELECT src_partition, src_offset FROM service_ticket UNION ALL SELECT src_partition, src_offset FROM opportunity UNION ALL SELECT src_partition, src_offset FROM \"order\" UNION ALL SELECT src_partition, src_offset FROM checkin UNION ALL SELECT src_partition, src_offset FROM dead_letters";

fn wait_timeout(c: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then wait for a clean exit.
fn terminate(p: &mut Proc) {
    let c = &mut p.0;
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let s = wait_timeout(c, Duration::from_mins(1)).expect("exited after SIGTERM");
    assert!(s.success(), "exit after SIGTERM: {s:?}");
}

/// A `crmdq` process of a test, killed if the test ends (or fails) before it does.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small deterministic pseudo-random sequence (xorshift) for kill moments.
struct Moments(u64);
impl Moments {
    fn next_ms(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// The last `n` characters of `s`.
fn tail(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

fn report(fault: &str, messages: usize, lost: i64, doubled: i64) {
    eprintln!("GUARANTEE {fault}: {messages} messages, lost {lost}, doubled {doubled}");
}

/// Five `crmdq run`s killed with SIGKILL at pseudo-random moments while messages keep
/// arriving, then a catch-up run: exactly once, and the scores of a clean ingest.
/// `settle`: time left after a kill before the next start (see the tansu test).
fn sigkill_five_times(s: &Setup, kafka: &dyn Kafka, settle: Duration, name: &str) {
    let chunks: Vec<&[String]> = s.lines.chunks(s.lines.len().div_ceil(6)).collect();
    produce_lines(&kafka.addr(), chunks[0], 0);
    let mut sent = chunks[0].len();
    let mut moments = Moments(0x9e37_79b9_7f4a_7c15);
    for (k, chunk) in chunks[1..].iter().enumerate() {
        let mut c = s.spawn_run(kafka, k, &[]);
        std::thread::sleep(moments.next_ms(500, 4000));
        produce_lines(&kafka.addr(), chunk, sent);
        sent += chunk.len();
        std::thread::sleep(moments.next_ms(100, 2500));
        c.0.kill().unwrap(); // SIGKILL
        c.0.wait().unwrap();
        std::thread::sleep(settle);
    }
    assert!(s.committed() > 0, "the killed runs committed something");
    s.catch_up(kafka);
    let (lost, doubled) = s.lost_and_doubled(kafka);
    report(name, sent, lost, doubled);
    assert_eq!((lost, doubled), (0, 0));
    assert_eq!(
        kafka.high_watermarks(PARTITIONS).iter().sum::<i64>(),
        sent as i64
    );
    s.scores_match_a_clean_ingest();
}

/// On tansu a restarted consumer waits out the killed one's session (6 s): tansu 0.6
/// expires a dead member only when others talk to the group, and a join racing that
/// expiry was seen to hang the group; a Kafka broker needs no pause.
#[test]
#[ignore = "needs the tansu broker; .ci/run builds it and runs the ignored tests"]
fn sigkill_five_times_on_tansu_loses_and_doubles_nothing() {
    let (_serial, s, broker) = on_tansu(
        "sigkill_five_times_on_tansu_loses_and_doubles_nothing",
        10,
        30,
    );
    sigkill_five_times(&s, &broker, Duration::from_secs(7), "SIGKILL x5 (tansu)");
}

#[test]
fn sigkill_five_times_on_the_mock_cluster_loses_and_doubles_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup(10, 30);
    sigkill_five_times(
        &s,
        &Mock::start(),
        Duration::ZERO,
        "SIGKILL x5 (mock cluster)",
    );
}

/// One, two, three instances in one group (cooperative-sticky), one leaving cleanly and
/// one leaving by `leave_b` (SIGTERM or SIGKILL) mid-stream while messages arrive; every
/// configuration commits before the next change.
fn instances(s: &Setup, kafka: &dyn Kafka, crash_b: bool, name: &str) {
    let chunks: Vec<&[String]> = s.lines.chunks(s.lines.len().div_ceil(5)).collect();
    let mut sent = 0;
    let mut feed = |i: usize| {
        produce_lines(&kafka.addr(), chunks[i], sent);
        sent += chunks[i].len();
        sent as i64
    };
    let within = Duration::from_secs(90);

    let mut a = s.spawn_run(kafka, 0, &[]);
    s.wait_committed(feed(0), within); // one instance
    let mut b = s.spawn_run(kafka, 1, &[]);
    s.wait_joined(1, within);
    s.wait_committed(feed(1), within); // two instances
    let mut c = s.spawn_run(kafka, 2, &[]);
    s.wait_joined(2, within);
    s.wait_committed(feed(2), within); // three instances
    terminate(&mut a); // a clean leave mid-stream
    s.wait_committed(feed(3), within); // two again
    if crash_b {
        b.0.kill().unwrap(); // a crash: its partitions move after the session timeout
        b.0.wait().unwrap();
    } else {
        terminate(&mut b);
    }
    let total = feed(4);
    s.wait_committed(total, within); // one instance takes over everything
    terminate(&mut c);

    let (lost, doubled) = s.lost_and_doubled(kafka);
    report(name, sent, lost, doubled);
    assert_eq!((lost, doubled), (0, 0));
    assert_eq!(s.committed(), total);
    let logs: String = (0..3).map(|n| s.run_log(n)).collect();
    assert!(logs.contains("partitions revoked"), "rebalances happened");
    s.scores_match_a_clean_ingest();
}

/// On tansu the instances leave cleanly (SIGTERM): tansu 0.6 was seen not to expire a
/// SIGKILLed member (its partitions stayed assigned to it), which no client can work
/// around; the crash case runs on the mock cluster below. Not in the default run: in CI
/// tansu's group coordinator once left the last instance without the partitions the
/// others had released (1,726 of 1,839 committed after 90 s; the rest was never
/// assigned to anyone). Run it with
/// `cargo test --test it two_and_three_instances_on_tansu -- --ignored`.
#[test]
#[ignore = "manual: tansu 0.6's group coordinator does not always reassign released partitions (.ci/run skips it)"]
fn two_and_three_instances_on_tansu_lose_and_double_nothing() {
    let (_serial, s, broker) = on_tansu(
        "two_and_three_instances_on_tansu_lose_and_double_nothing",
        10,
        30,
    );
    instances(
        &s,
        &broker,
        false,
        "2 and 3 instances, clean leaves (tansu)",
    );
}

#[test]
fn two_and_three_instances_with_a_crash_on_the_mock_cluster_lose_and_double_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup(10, 30);
    instances(
        &s,
        &Mock::start(),
        true,
        "2 and 3 instances, one SIGKILLed (mock cluster)",
    );
}

#[test]
#[ignore = "needs the tansu broker; .ci/run builds it and runs the ignored tests"]
fn a_30_second_broker_outage_is_ridden_out() {
    let (_serial, s, mut broker) = on_tansu("a_30_second_broker_outage_is_ridden_out", 6, 20);
    let half = s.lines.len() / 2;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut run = s.spawn_run(&broker, 0, &["--http-listen", &http.to_string()]);
    produce_lines(&broker.addr(), &s.lines[..half], 0);
    s.wait_committed(half as i64, Duration::from_mins(1));
    let ready = || http_get(http, "/readyz", None).0 == 200;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "ready before the outage");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The broker is gone for 30 s.
    let stopped = Instant::now();
    broker.down();
    let mut seen_not_ready = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        seen_not_ready |= !ready();
        assert!(run.0.try_wait().unwrap().is_none(), "run keeps going");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        seen_not_ready,
        "/readyz reported not ready during the outage"
    );
    broker.up();
    produce_lines(&broker.addr(), &s.lines[half..], half);
    s.wait_committed(s.lines.len() as i64, Duration::from_mins(2));
    let deadline = Instant::now() + Duration::from_mins(1);
    while !ready() {
        assert!(Instant::now() < deadline, "ready again after the outage");
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&mut run);

    let (lost, doubled) = s.lost_and_doubled(&broker);
    report("30 s broker outage", s.lines.len(), lost, doubled);
    assert_eq!((lost, doubled), (0, 0));
    s.scores_match_a_clean_ingest();
}

#[test]
#[ignore = "needs the tansu broker; .ci/run builds it and runs the ignored tests"]
fn hostile_and_large_messages_on_a_real_broker() {
    let (_serial, s, broker) = on_tansu("hostile_and_large_messages_on_a_real_broker", 2, 12);
    // tansu 0.6 caps a fetch response at 5 MiB and, unlike Kafka (KIP-74), does not hand
    // out a first message larger than that: a bigger message stalls every consumer of its
    // partition. So here 4 MB is the big record and 4.5 MB is over this pipeline's 4 MiB
    // limit (a too_large dead letter); the 10 MB case goes through file ingest
    // (`cli.rs`) and the decoder's tests.
    let mut text = std::fs::read_to_string(&s.pipeline).unwrap();
    text = text.replace("source:\n", "source:\n  max_message_bytes: 4194304\n");
    std::fs::write(&s.pipeline, text).unwrap();
    let big = format!(
        "{{\"record_type\":\"customer\",\"record_id\":\"big\",\"entered_by\":\"li.wei\",\"event_time\":\"2026-11-01 09:00:00\",\"entered_at\":\"2026-11-01 10:00:00\",\"note\":\"{}\"}}",
        "x".repeat(4_000_000)
    );
    let rec = |fields: &str| -> Msg { (Some(format!("{{{fields}}}").into_bytes()), None) };
    let ok = "\"entered_by\":\"li.wei\",\"event_time\":\"2026-11-01 09:00:00\",\"entered_at\":\"2026-11-01 10:00:00\"";
    let hostile: Vec<Msg> = vec![
        (Some(big.into_bytes()), Some(b"big".to_vec())),
        (Some(vec![0xff, 0xfe, b'{', 0x80]), None),
        (
            Some(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
            None,
        ),
        (None, None),
        (Some(Vec::new()), None),
        (None, Some(b"key-only".to_vec())),
        (Some(b"{\"record_type\":\"customer\"".to_vec()), None),
        (Some(b"[1,2,3]".to_vec()), None),
        rec(&format!("\"record_id\":\"x1\",{ok}")),
        rec(&format!(
            "\"record_type\":\"spaceship\",\"record_id\":\"x2\",{ok}"
        )),
        rec(&format!("\"record_type\":\"customer\",{ok}")),
        rec(
            "\"record_type\":\"customer\",\"record_id\":\"x3\",\"event_time\":\"2026-11-01 09:00:00\",\"entered_at\":\"2026-11-01 10:00:00\"",
        ),
        rec(
            "\"record_type\":\"customer\",\"record_id\":\"x4\",\"entered_by\":\"li.wei\",\"entered_at\":\"2026-11-01 10:00:00\"",
        ),
        rec(
            "\"record_type\":\"customer\",\"record_id\":\"x5\",\"entered_by\":\"li.wei\",\"event_time\":\"yesterday\",\"entered_at\":\"2026-11-01 10:00:00\"",
        ),
        rec(
            "\"record_type\":\"customer\",\"record_id\":\"x6\",\"entered_by\":\"li.wei\",\"event_time\":\"2026-11-01 09:00:00\",\"entered_at\":\"2026-13-45\"",
        ),
        rec(&format!(
            "\"record_type\":\"customer\",\"record_id\":\"x7\",\"version\":\"new\",{ok}"
        )),
        (Some(vec![b' '; 4_500_000]), None),
    ];
    // Interleaved with the good records.
    let mut msgs = Vec::new();
    for (i, l) in s.lines.iter().enumerate() {
        msgs.push((
            Some(l.as_bytes().to_vec()),
            Some(i.to_string().into_bytes()),
        ));
        if i % 5 == 0
            && let Some(h) = hostile.get(i / 5)
        {
            msgs.push(h.clone());
        }
    }
    assert!(msgs.len() >= s.lines.len() + hostile.len());
    produce(&broker.addr(), &msgs);
    s.catch_up(&broker);

    let (lost, doubled) = s.lost_and_doubled(&broker);
    report(
        "hostile messages incl. 4 MB and 4.5 MB",
        msgs.len(),
        lost,
        doubled,
    );
    assert_eq!((lost, doubled), (0, 0));
    let reasons: BTreeMap<String, i64> = s
        .sql("SELECT reason, COUNT(*) AS n FROM dead_letters GROUP BY reason")
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    // Every dead-letter case of the contract (mapping_failed needs a source mapping).
    for reason in [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "empty_message",
        "missing_record_type",
        "unknown_record_type",
        "missing_record_id",
        "missing_entered_by",
        "bad_event_time",
        "bad_entered_at",
        "bad_version",
        "too_large",
    ] {
        assert!(reasons.contains_key(reason), "{reason} in {reasons:?}");
    }
    // The 4 MB record is a record (under the 4 MiB limit), its note kept in `extra`.
    let big: Vec<Value> = s.sql(
        "SELECT CAST(octet_length(extra) AS BIGINT) AS n FROM customer WHERE record_id = 'big'",
    );
    assert!(big[0]["n"].as_i64().unwrap() > 4_000_000);
}

/// The live data files of the warehouse, as the log names them.
fn live_files(w: &Path) -> i64 {
    let rows = sql(
        w,
        "SELECT 1 AS one", // opens the warehouse: the count below comes from the log
    );
    assert_eq!(rows.len(), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let wh = crmdq_warehouse::Warehouse::open(w).unwrap();
        let snap = wh.snapshot().await.unwrap();
        snap.tables.values().map(|f| f.len() as i64).sum()
    })
}

/// `crmdq optimize` three times while `run` commits and messages keep arriving: nothing
/// lost or doubled (for crmdq and for a Delta reader), the scores of a clean ingest, and
/// fewer files than before.
#[test]
fn optimize_while_run_commits_on_the_mock_cluster() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup(10, 30);
    let kafka = Mock::start();
    let chunks: Vec<&[String]> = s.lines.chunks(s.lines.len().div_ceil(4)).collect();
    produce_lines(&kafka.addr(), chunks[0], 0);
    let mut sent = chunks[0].len();
    let mut c = s.spawn_run(&kafka, 0, &[]);
    s.wait_committed(1, Duration::from_mins(1));
    let w = s.warehouse.as_str();
    // (files taken out, files written) by each optimize that found work.
    let mut compacted: Vec<(i64, i64)> = Vec::new();
    for chunk in &chunks[1..] {
        produce_lines(&kafka.addr(), chunk, sent);
        sent += chunk.len();
        std::thread::sleep(Duration::from_millis(700));
        let before = live_files(Path::new(&s.warehouse));
        let out = common::run(&["optimize", "--warehouse", w]);
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("{said} (live files before: {before})");
        if let Some(rest) = said.strip_prefix("optimized: ")
            && let Some((n, tail)) = rest.split_once(" small file(s) compacted into ")
        {
            let m = tail.split_whitespace().next().unwrap();
            compacted.push((n.parse().unwrap(), m.parse().unwrap()));
        }
    }
    terminate(&mut c);
    s.catch_up(&kafka);
    assert!(
        !compacted.is_empty(),
        "some optimize found small files to compact"
    );
    assert!(
        compacted.iter().all(|(n, m)| n > m && *m > 0),
        "each compaction reduced the file count: {compacted:?}"
    );
    // Once more with nothing writing: whatever is left small is compacted, or nothing is.
    let before = live_files(Path::new(&s.warehouse));
    common::run(&["optimize", "--warehouse", w]);
    assert!(live_files(Path::new(&s.warehouse)) <= before);
    let (lost, doubled) = s.lost_and_doubled(&kafka);
    report("optimize x3 during run (mock cluster)", sent, lost, doubled);
    assert_eq!((lost, doubled), (0, 0));
    s.scores_match_a_clean_ingest();
    // Vacuum (nothing writes now): the compacted files go, every reader still reads
    // everything.
    let out = common::run(&[
        "vacuum",
        "--warehouse",
        w,
        "--retention-hours",
        "0",
        "--force",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("deleted"), "{said}");
    let (lost, doubled) = s.lost_and_doubled(&kafka);
    assert_eq!((lost, doubled), (0, 0));
}

/// The fault suite with the warehouse on S3 (moto, installed by `.ci/run`) instead of a
/// local folder: five SIGKILLs, one to three instances in one group sharing one bucket,
/// and the S3 endpoint gone mid-stream. Commits are create-if-absent PUTs
/// (`If-None-Match: *`), which moto answers with 412 when the version exists.
#[test]
#[ignore = "needs moto[server] (Python); .ci/run installs it and runs the ignored tests"]
fn sigkill_five_times_with_an_s3_warehouse_loses_and_doubles_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup_on_s3(10, 30);
    sigkill_five_times(
        &s,
        &Mock::start(),
        Duration::ZERO,
        "SIGKILL x5 (mock cluster, S3 warehouse on moto)",
    );
}

#[test]
#[ignore = "needs moto[server] (Python); .ci/run installs it and runs the ignored tests"]
fn two_and_three_instances_on_one_s3_warehouse_lose_and_double_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = setup_on_s3(10, 30);
    instances(
        &s,
        &Mock::start(),
        true,
        "2 and 3 instances, one SIGKILLed (mock cluster, one S3 warehouse on moto)",
    );
}

/// The S3 endpoint stops answering for 15 s while messages arrive (an unwritable
/// warehouse): `run` keeps going, commits nothing it cannot make durable, and once the
/// endpoint is back commits everything exactly once.
#[test]
#[ignore = "needs moto[server] (Python); .ci/run installs it and runs the ignored tests"]
fn an_s3_outage_mid_stream_loses_and_doubles_nothing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut s = setup_on_s3(6, 20);
    let kafka = Mock::start();
    let half = s.lines.len() / 2;
    produce_lines(&kafka.addr(), &s.lines[..half], 0);
    let mut run = s.spawn_run(&kafka, 0, &[]);
    s.wait_committed(half as i64, Duration::from_mins(1));

    s.moto.as_mut().unwrap().stop();
    produce_lines(&kafka.addr(), &s.lines[half..], half);
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(15) {
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!(
                "run ended during the outage ({status}); its log ends:\n{}",
                tail(&s.run_log(0), 6000)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    s.moto.as_mut().unwrap().start();
    s.wait_committed(s.lines.len() as i64, Duration::from_mins(3));
    terminate(&mut run);
    let log = s.run_log(0);
    assert!(
        log.contains("error") || log.contains("WARN") || log.contains("retry"),
        "the outage was seen: {}",
        tail(&log, 3000)
    );

    let (lost, doubled) = s.lost_and_doubled(&kafka);
    report(
        "S3 endpoint down 15 s (mock cluster, moto)",
        s.lines.len(),
        lost,
        doubled,
    );
    assert_eq!((lost, doubled), (0, 0));
    s.scores_match_a_clean_ingest();
}
