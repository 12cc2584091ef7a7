//! The commit log: one JSON file per commit, `_crmdq_log/<20-digit version>.json`,
//! written create-if-absent so two writers can never both claim a version.
//!
//! Checkpoints (`_crmdq_log/<20-digit version>.checkpoint`, JSON) hold the state folded
//! from the entries up to their version, without the files' Delta statistics, so that a
//! reader starts from the newest one and reads only the entries after it: a score entry
//! names every score file with its statistics (1.8 MB at 1M entries), and without them
//! every command's start read the whole history (128 MB of JSON after 76 commits took
//! 0.4 s before `crmdq sql` answered `SELECT 1`). A committer writes one after every
//! [`CHECKPOINT_EVERY`]th version and after an entry of [`CHECKPOINT_ENTRY_BYTES`] or more.
//! A checkpoint is an optimisation only: one that cannot be read is skipped (the entries
//! are the truth), and the name does not end in `.json`, so a reader that folds
//! `_crmdq_log/*.json` (docs/warehouse.md) never takes one for an entry.

use std::collections::BTreeMap;

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{LOG_DIR, Warehouse, WarehouseError};

/// A data file added by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAdd {
    /// Table name: a record type, `dead_letters`, or a score table.
    pub table: String,
    /// Partition value (business date, or ingestion date for dead letters).
    pub dt: String,
    /// Warehouse-relative path.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// The smallest and largest `dq_ingested_at` (µs since the epoch) of its rows, for
    /// tables that have that column: a question about what arrived in a time window
    /// (the dead-letter ratio) is answered from the log for every file wholly inside or
    /// outside the window, and only the others are read. Absent in logs written before
    /// it existed (such files are read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_us: Option<[i64; 2]>,
    /// Delta statistics of the file (see [`crate::delta::stats_json`]), when the writer
    /// had them at hand; published as the file's Delta add action. Not kept in a
    /// [`Snapshot`] (read from the footer when needed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    /// Written by `optimize` from other files' rows (no new data): published with
    /// `dataChange: false`, as Delta's OPTIMIZE does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewrite: bool,
}

/// A file taken out of a table by a commit (`optimize`: its rows are in the entry's new
/// files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRemove {
    pub table: String,
    pub path: String,
}

/// A source's committed end position: everything before it is in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// Kafka: the next offset to read (last committed offset + 1). Positions only move
    /// forward (the largest wins), except an entry marked `reset`: librdkafka reset the
    /// partition after "offset out of range" (a re-created topic), and this position
    /// replaces the previous one.
    Kafka {
        topic: String,
        partition: i32,
        next_offset: i64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
    },
    /// A file: lines up to and including `through_line` are committed.
    File { path: String, through_line: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// Records and dead letters appended; source positions advanced.
    Ingest,
    /// Score tables replaced as a whole by the files of this entry.
    Score,
    /// Alert events appended (`alerts` table).
    Alerts,
    /// Small files compacted: `removes` taken out, `files` (the same rows) added.
    Optimize,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Set by [`Warehouse::commit`].
    #[serde(default)]
    pub version: u64,
    pub kind: LogKind,
    /// RFC 3339 instant of the commit (from the injected clock).
    pub committed_at: String,
    /// Who wrote it (command and host/pid), for operators.
    pub writer: String,
    pub files: Vec<FileAdd>,
    #[serde(default)]
    pub sources: Vec<SourcePosition>,
    /// For `score` entries: the tables this entry replaces entirely.
    #[serde(default)]
    pub replaces_tables: Vec<String>,
    /// For `alerts` entries: the latest business date whose person and team rules have
    /// been evaluated live. Alert state only moves forward in business dates: an
    /// evaluation of an earlier date is a report and changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_through: Option<String>,
    /// For `optimize` entries: files no longer live (applied before `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<FileRemove>,
    /// For `score` entries: what the scores were computed from (the scoring crate's
    /// record of it: the log version and each record table's version scored, the roster,
    /// absences and plan it used, its own state files), so that the next score can work
    /// out what changed. Opaque to the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_from: Option<serde_json::Value>,
}

/// The state of the warehouse as the log tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    /// Table → committed files, in commit order.
    pub tables: BTreeMap<String, Vec<FileAdd>>,
    /// (topic, partition) → next offset.
    pub kafka: BTreeMap<(String, i32), i64>,
    /// File path → last committed line.
    pub files: BTreeMap<String, i64>,
    pub entries: usize,
    /// The latest business date evaluated live by the alerts (the largest of the log's
    /// [`LogEntry::alerts_through`]).
    pub alerts_through: Option<String>,
    /// Table → its folder (`records/customer`), for every table the log ever named a file
    /// of (also once a re-score left it empty).
    pub dirs: BTreeMap<String, String>,
    /// Table → the last version whose entry changed it (what its Delta log must show).
    pub changed_at: BTreeMap<String, u64>,
    /// The latest `score` entry's version and [`LogEntry::computed_from`].
    pub last_score: Option<(u64, Option<serde_json::Value>)>,
}

impl Snapshot {
    pub fn files_of(&self, table: &str) -> &[FileAdd] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }

    pub fn rows_of(&self, table: &str) -> u64 {
        self.files_of(table).iter().map(|f| f.rows).sum()
    }

    /// Fold one entry in (entries are applied in version order).
    pub fn apply(&mut self, e: &LogEntry) {
        self.version = self.version.max(e.version);
        self.entries += 1;
        if let Some(d) = &e.alerts_through
            && self.alerts_through.as_ref().is_none_or(|t| d > t)
        {
            self.alerts_through = Some(d.clone());
        }
        for t in e
            .replaces_tables
            .iter()
            .chain(e.files.iter().map(|f| &f.table))
            .chain(e.removes.iter().map(|r| &r.table))
        {
            self.changed_at.insert(t.clone(), e.version);
        }
        if e.kind == LogKind::Score {
            self.last_score = Some((e.version, e.computed_from.clone()));
        }
        for t in &e.replaces_tables {
            self.tables.remove(t);
        }
        for r in &e.removes {
            if let Some(files) = self.tables.get_mut(&r.table) {
                files.retain(|f| f.path != r.path);
            }
        }
        for f in &e.files {
            if !self.dirs.contains_key(&f.table)
                && let Some(d) = crate::delta::table_dir_of(&f.path)
            {
                self.dirs.insert(f.table.clone(), d.to_string());
            }
            let mut f = f.clone();
            f.stats = None;
            self.tables.entry(f.table.clone()).or_default().push(f);
        }
        for s in &e.sources {
            match s {
                SourcePosition::Kafka {
                    topic,
                    partition,
                    next_offset,
                    reset,
                } => {
                    let v = self
                        .kafka
                        .entry((topic.clone(), *partition))
                        .or_insert(*next_offset);
                    *v = if *reset {
                        *next_offset
                    } else {
                        (*v).max(*next_offset)
                    };
                }
                SourcePosition::File { path, through_line } => {
                    let v = self.files.entry(path.clone()).or_insert(*through_line);
                    *v = (*v).max(*through_line);
                }
            }
        }
    }
}

fn entry_path(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

fn parse_version(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

/// Whether a file name in the log folder is a commit entry.
pub(crate) fn is_entry_name(name: &str) -> bool {
    parse_version(name).is_some()
}

pub(crate) async fn list_versions(w: &Warehouse) -> Result<Vec<u64>, WarehouseError> {
    Ok(list_log(w).await?.0)
}

/// The log folder in one listing: the entries' versions and the checkpoints' versions,
/// each ascending.
async fn list_log(w: &Warehouse) -> Result<(Vec<u64>, Vec<u64>), WarehouseError> {
    let metas = w.list(LOG_DIR).await?;
    let (mut entries, mut checkpoints) = (Vec::new(), Vec::new());
    for name in metas.iter().filter_map(|m| m.location.filename()) {
        if let Some(v) = parse_version(name) {
            entries.push(v);
        } else if let Some(v) = parse_checkpoint(name) {
            checkpoints.push(v);
        }
    }
    entries.sort_unstable();
    checkpoints.sort_unstable();
    Ok((entries, checkpoints))
}

/// A checkpoint is written after every this many versions...
pub const CHECKPOINT_EVERY: u64 = 10;

/// ...and after an entry of at least this many bytes (a score's, or a large backfill's).
pub const CHECKPOINT_ENTRY_BYTES: usize = 1 << 20;

/// The format of the checkpoints this build writes and reads (another is skipped).
const CHECKPOINT_FORMAT: u32 = 1;

fn checkpoint_path(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.checkpoint")
}

fn parse_checkpoint(name: &str) -> Option<u64> {
    name.strip_suffix(".checkpoint")?.parse().ok()
}

/// A checkpoint's contents: a [`Snapshot`], with the Kafka positions as a list (JSON
/// object keys are strings).
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    format: u32,
    version: u64,
    entries: usize,
    tables: BTreeMap<String, Vec<FileAdd>>,
    kafka: Vec<KafkaAt>,
    files: BTreeMap<String, i64>,
    #[serde(default)]
    alerts_through: Option<String>,
    dirs: BTreeMap<String, String>,
    changed_at: BTreeMap<String, u64>,
    #[serde(default)]
    last_score: Option<(u64, Option<serde_json::Value>)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KafkaAt {
    topic: String,
    partition: i32,
    next_offset: i64,
}

impl Checkpoint {
    fn of(s: &Snapshot) -> Checkpoint {
        Checkpoint {
            format: CHECKPOINT_FORMAT,
            version: s.version,
            entries: s.entries,
            tables: s.tables.clone(),
            kafka: s
                .kafka
                .iter()
                .map(|((topic, partition), next_offset)| KafkaAt {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next_offset,
                })
                .collect(),
            files: s.files.clone(),
            alerts_through: s.alerts_through.clone(),
            dirs: s.dirs.clone(),
            changed_at: s.changed_at.clone(),
            last_score: s.last_score.clone(),
        }
    }

    fn into_snapshot(self) -> Snapshot {
        Snapshot {
            version: self.version,
            tables: self.tables,
            kafka: self
                .kafka
                .into_iter()
                .map(|k| ((k.topic, k.partition), k.next_offset))
                .collect(),
            files: self.files,
            entries: self.entries,
            alerts_through: self.alerts_through,
            dirs: self.dirs,
            changed_at: self.changed_at,
            last_score: self.last_score,
        }
    }
}

/// The state at checkpoint `v`, or why it cannot be used.
async fn read_checkpoint(w: &Warehouse, v: u64) -> Result<Snapshot, String> {
    let p = checkpoint_path(v);
    let bytes = w.get_bytes(&p).await.map_err(|e| e.to_string())?;
    let c: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| format!("{p}: {e}"))?;
    if c.format != CHECKPOINT_FORMAT || c.version != v {
        return Err(format!(
            "{p}: format {} of version {}, expected format {CHECKPOINT_FORMAT} of version {v}",
            c.format, c.version
        ));
    }
    Ok(c.into_snapshot())
}

/// The state of the newest readable checkpoint among `candidates` (ascending) that is
/// newer than `after`; one that cannot be read is skipped with a warning.
async fn newest_checkpoint(w: &Warehouse, candidates: &[u64], after: u64) -> Option<Snapshot> {
    for v in candidates.iter().rev().filter(|v| **v > after) {
        match read_checkpoint(w, *v).await {
            Ok(s) => return Some(s),
            Err(e) => tracing::warn!(
                error = %e,
                "a commit-log checkpoint cannot be used; reading the entries instead"
            ),
        }
    }
    None
}

/// After version `v` (of `bytes` bytes) was written: a checkpoint at `v` if it is due
/// ([`CHECKPOINT_EVERY`], [`CHECKPOINT_ENTRY_BYTES`]). `at_v` is the state at `v` when the
/// committer holds it (else it is read). Never fails the commit: a checkpoint that cannot
/// be written is logged, and readers read the entries instead.
async fn checkpoint_after(w: &Warehouse, v: u64, bytes: usize, at_v: Option<&Snapshot>) {
    if !v.is_multiple_of(CHECKPOINT_EVERY) && bytes < CHECKPOINT_ENTRY_BYTES {
        return;
    }
    let written = async {
        let read;
        let snap = match at_v {
            Some(s) if s.version == v => s,
            _ => {
                read = read_snapshot_at(w, v).await?;
                &read
            }
        };
        let body = serde_json::to_vec(&Checkpoint::of(snap)).expect("checkpoints serialize");
        w.put_durable(&checkpoint_path(v), bytes::Bytes::from(body))
            .await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(version = v, error = %e, "writing a commit-log checkpoint failed; readers read the entries");
    }
}

/// The state at version `v` exactly: the newest checkpoint at or before it, then the
/// entries up to `v`.
async fn read_snapshot_at(w: &Warehouse, v: u64) -> Result<Snapshot, WarehouseError> {
    let (entries, checkpoints) = list_log(w).await?;
    let usable: Vec<u64> = checkpoints.into_iter().filter(|c| *c <= v).collect();
    let mut snap = newest_checkpoint(w, &usable, 0).await.unwrap_or_default();
    let newer: Vec<u64> = entries
        .into_iter()
        .filter(|e| *e > snap.version && *e <= v)
        .collect();
    fold(w, &mut snap, newer).await?;
    Ok(snap)
}

/// The newest log version (0 for an empty log): one folder listing.
pub(crate) async fn latest_version(w: &Warehouse) -> Result<u64, WarehouseError> {
    Ok(list_versions(w).await?.last().copied().unwrap_or(0))
}

/// A past state of the warehouse (time travel): a commit-log version, or the last commit
/// at or before an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Version(u64),
    Time(jiff::Timestamp),
}

impl std::str::FromStr for AsOf {
    type Err = String;
    /// `42` (a version) or an RFC 3339 instant (`2026-12-01T10:00:00+08:00`).
    fn from_str(s: &str) -> Result<AsOf, String> {
        if let Ok(v) = s.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        s.parse::<jiff::Timestamp>().map(AsOf::Time).map_err(|e| {
            format!("--as-of {s:?}: expected a log version (a number) or an RFC 3339 instant: {e}")
        })
    }
}

/// The state as of `at`: the entries up to the version, or committed at or before the
/// instant, folded. An error names the range that exists when `at` is outside it.
pub(crate) async fn read_snapshot_as_of(
    w: &Warehouse,
    at: AsOf,
) -> Result<Snapshot, WarehouseError> {
    let versions = list_versions(w).await?;
    let latest = versions.last().copied().unwrap_or(0);
    let out_of_range = |what: String| WarehouseError::AsOf {
        message: format!("{what}; this warehouse has commit-log versions 1 to {latest}"),
    };
    let t = match at {
        AsOf::Version(v) if v == 0 || v > latest => {
            return Err(out_of_range(format!("version {v} does not exist")));
        }
        AsOf::Version(v) => return read_snapshot_at(w, v).await,
        AsOf::Time(t) => t,
    };
    // An instant: the entries in order up to the first committed after it (their
    // `committed_at` need not grow with the version, so no checkpoint stands for them).
    let mut snap = Snapshot::default();
    for v in versions {
        let e = read_entry(w, v).await?;
        let take = e
            .committed_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|c| c <= t);
        if !take {
            break;
        }
        snap.apply(&e);
    }
    if snap.entries == 0 {
        return Err(out_of_range(format!("nothing was committed as of {at:?}")));
    }
    Ok(snap)
}

pub(crate) async fn read_entry(w: &Warehouse, v: u64) -> Result<LogEntry, WarehouseError> {
    let p = entry_path(v);
    let bytes = w.get_bytes(&p).await?;
    let mut e: LogEntry =
        serde_json::from_slice(&bytes).map_err(|e| WarehouseError::CorruptLog {
            path: p.clone(),
            message: e.to_string(),
        })?;
    e.version = v;
    Ok(e)
}

/// Log entries read at once while folding the log.
const READ_AHEAD: usize = 32;

pub(crate) async fn read_snapshot(w: &Warehouse) -> Result<Snapshot, WarehouseError> {
    let mut snap = Snapshot::default();
    refresh(w, &mut snap).await?;
    Ok(snap)
}

/// Fold in the entries written since `snap` was taken; true if there were any.
/// Costs one listing of the log folder plus one read per new entry.
/// A state that holds entries starts from a checkpoint only when that skips at least
/// [`CHECKPOINT_EVERY`] of them (a checkpoint is as large as the live file list).
pub(crate) async fn refresh(w: &Warehouse, snap: &mut Snapshot) -> Result<bool, WarehouseError> {
    let (entries, checkpoints) = list_log(w).await?;
    let latest = entries.last().copied().unwrap_or(0);
    let any = latest > snap.version;
    let worth = if snap.entries == 0 {
        snap.version
    } else {
        snap.version + CHECKPOINT_EVERY - 1
    };
    let usable: Vec<u64> = checkpoints.into_iter().filter(|c| *c <= latest).collect();
    if let Some(c) = newest_checkpoint(w, &usable, worth).await {
        *snap = c;
    }
    let newer: Vec<u64> = entries.into_iter().filter(|v| *v > snap.version).collect();
    fold(w, snap, newer).await?;
    Ok(any)
}

/// Fold the entries `versions` (ascending) into `snap`. Read ahead (an object store
/// answers each read in milliseconds, not microseconds), folded in version order.
async fn fold(
    w: &Warehouse,
    snap: &mut Snapshot,
    versions: Vec<u64>,
) -> Result<(), WarehouseError> {
    let mut entries = futures::stream::iter(versions)
        .map(|v| read_entry(w, v))
        .buffered(READ_AHEAD);
    while let Some(e) = entries.try_next().await? {
        snap.apply(&e);
    }
    Ok(())
}

/// Commit `entry` only if each Kafka partition in `expect` is still at the position given
/// (what the committer started reading from): another consumer that committed the same
/// partition meanwhile (split ownership during a rebalance) makes this a
/// [`WarehouseError::Fenced`] and nothing is written, so no offset is ever committed twice.
/// Check and write are one step: the write is create-if-absent on the version after the
/// one checked, and a lost race re-checks. `snap` is kept up to date (entry included).
pub(crate) async fn commit_fenced(
    w: &Warehouse,
    mut entry: LogEntry,
    snap: &mut Snapshot,
    expect: &BTreeMap<(String, i32), i64>,
) -> Result<u64, WarehouseError> {
    loop {
        refresh(w, snap).await?;
        for ((topic, partition), expected) in expect {
            let found = snap
                .kafka
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            if found != *expected {
                return Err(WarehouseError::Fenced {
                    topic: topic.clone(),
                    partition: *partition,
                    expected: *expected,
                    found,
                });
            }
        }
        entry.version = snap.version + 1;
        if let Some(bytes) = put_entry(w, &entry).await? {
            snap.apply(&entry);
            checkpoint_after(w, entry.version, bytes, Some(snap)).await;
            return Ok(entry.version);
        }
    }
}

/// Write `entry` as version `entry.version`, create-if-absent, and fsync it (then a
/// checkpoint, if one is due). `Ok(false)`: another committer took that version first.
pub(crate) async fn try_put(w: &Warehouse, entry: &LogEntry) -> Result<bool, WarehouseError> {
    let Some(bytes) = put_entry(w, entry).await? else {
        return Ok(false);
    };
    checkpoint_after(w, entry.version, bytes, None).await;
    Ok(true)
}

/// [`try_put`] without the checkpoint: the entry's size in bytes, `None` when another
/// committer took that version first.
async fn put_entry(w: &Warehouse, entry: &LogEntry) -> Result<Option<usize>, WarehouseError> {
    let p = entry_path(entry.version);
    let body = serde_json::to_vec_pretty(entry).expect("log entries serialize");
    let bytes = body.len();
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match w
        .store()
        .put_opts(
            &object_store::path::Path::from(p.as_str()),
            PutPayload::from(body),
            opts,
        )
        .await
    {
        Ok(_) => {
            w.fsync(&p)
                .map_err(|e| WarehouseError::write(p.clone(), e))?;
            Ok(Some(bytes))
        }
        Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(WarehouseError::write(p, e)),
    }
}

pub(crate) async fn commit(w: &Warehouse, mut entry: LogEntry) -> Result<u64, WarehouseError> {
    entry.version = list_versions(w).await?.last().map_or(1, |v| v + 1);
    while !try_put(w, &entry).await? {
        entry.version += 1;
    }
    Ok(entry.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `i`th entry of a varied history: records and dead letters with Kafka and file
    /// positions, scores replacing their table (with what they were computed from), alert
    /// progress; entry 23 is a score of 4,000 files with statistics (over 1 MiB).
    fn varied_entry(i: u64) -> LogEntry {
        let score = i % 4 == 3;
        let n = if i == 23 { 4000 } else { 3 };
        let files = (0..n)
            .map(|k| FileAdd {
                table: if score { "person_daily" } else { ["customer", "dead_letters"][(k % 2) as usize] }
                    .into(),
                dt: format!("2026-11-{:02}", 1 + (i + k) % 28),
                path: format!("t/dt=x/part-{i}-{k}.parquet"),
                rows: i + k,
                bytes: 100 + k,
                ingested_us: (!score).then_some([i as i64, i as i64 + 1]),
                stats: Some(format!("{{\"numRecords\":{},\"minValues\":{{\"person_id\":\"a\"}},\"maxValues\":{{\"person_id\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}},\"nullCount\":{{}}}}", i + k)),
                rewrite: false,
            })
            .collect();
        LogEntry {
            version: 0,
            kind: if score {
                LogKind::Score
            } else {
                LogKind::Ingest
            },
            committed_at: format!("2026-12-01T00:{i:02}:00Z"),
            writer: "test".into(),
            files,
            sources: if score {
                Vec::new()
            } else {
                vec![
                    SourcePosition::Kafka {
                        topic: "crm".into(),
                        partition: (i % 3) as i32,
                        next_offset: i as i64 * 10,
                        reset: i == 13,
                    },
                    SourcePosition::File {
                        path: "/in.ndjson".into(),
                        through_line: i as i64,
                    },
                ]
            },
            replaces_tables: if score {
                vec!["person_daily".into()]
            } else {
                Vec::new()
            },
            alerts_through: i.is_multiple_of(5).then(|| format!("2026-11-{i:02}")),
            removes: Vec::new(),
            computed_from: score.then(|| serde_json::json!({"log_version": i})),
        }
    }

    /// The state the entries 1..=`to` fold to, computed here without the warehouse.
    fn folded(to: u64) -> Snapshot {
        let mut s = Snapshot::default();
        for i in 1..=to {
            let mut e = varied_entry(i);
            e.version = i;
            s.apply(&e);
        }
        s
    }

    /// (The log's own functions: `Warehouse::commit` would also publish each entry to Delta
    /// logs, which needs the data files.)
    /// A reader starts from the newest checkpoint and gets exactly the state the entries
    /// fold to: every 10th version and after an entry over 1 MiB; a checkpoint that cannot be
    /// read is skipped; time travel to a version uses the checkpoint at or before it.
    #[tokio::test]
    async fn checkpoints_give_the_state_the_entries_fold_to() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let log = dir.path().join(LOG_DIR);
        let mut snap = Snapshot::default();
        for i in 1..=25u64 {
            if i % 2 == 0 {
                // The consumer's path: fenced on positions it holds.
                commit_fenced(&w, varied_entry(i), &mut snap, &BTreeMap::new())
                    .await
                    .unwrap();
            } else {
                assert_eq!(commit(&w, varied_entry(i)).await.unwrap(), i);
            }
        }
        let mut checkpoints: Vec<String> = std::fs::read_dir(&log)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".checkpoint"))
            .collect();
        checkpoints.sort();
        assert_eq!(
            checkpoints,
            [10u64, 20, 23].map(|v| format!("{v:020}.checkpoint")),
            "every 10th version, and after the 1 MiB entry"
        );
        assert!(
            snap == folded(24),
            "the committer's own state (its last commit was 24)"
        );
        assert!(read_snapshot(&w).await.unwrap() == folded(25));
        // Read from the checkpoint: with the entries up to 23 gone, the state is the same.
        let aside = dir.path().join("aside");
        std::fs::create_dir(&aside).unwrap();
        for v in 1..=23u64 {
            let name = format!("{v:020}.json");
            std::fs::rename(log.join(&name), aside.join(&name)).unwrap();
        }
        assert!(read_snapshot(&w).await.unwrap() == folded(25));
        for v in 1..=23u64 {
            let name = format!("{v:020}.json");
            std::fs::rename(aside.join(&name), log.join(&name)).unwrap();
        }
        // Time travel to a version: the checkpoint at or before it, then entries.
        for v in [9u64, 10, 15, 20, 22, 23, 24] {
            let at = read_snapshot_as_of(&w, AsOf::Version(v)).await.unwrap();
            assert!(at == folded(v), "as of version {v}");
        }
        // A torn checkpoint is skipped (the one before it, then the entries).
        std::fs::write(
            log.join(format!("{:020}.checkpoint", 23)),
            b"{\"format\":1,",
        )
        .unwrap();
        assert!(read_snapshot(&w).await.unwrap() == folded(25));
        // A reader that holds a state catches up the same way.
        let mut old = read_snapshot_as_of(&w, AsOf::Version(3)).await.unwrap();
        assert!(refresh(&w, &mut old).await.unwrap());
        assert!(old == folded(25));
    }
}
