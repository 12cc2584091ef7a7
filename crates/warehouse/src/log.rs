//! The commit log: one JSON file per commit, `_crmdq_log/<20-digit version>.json`,
//! written create-if-absent so two writers can never both claim a version.

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
#[derive(Debug, Clone, Default)]
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
    let metas = w.list(LOG_DIR).await?;
    let mut v: Vec<u64> = metas
        .iter()
        .filter_map(|m| m.location.filename().and_then(parse_version))
        .collect();
    v.sort_unstable();
    Ok(v)
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
    if let AsOf::Version(v) = at
        && (v == 0 || v > latest)
    {
        return Err(out_of_range(format!("version {v} does not exist")));
    }
    let mut snap = Snapshot::default();
    for v in versions {
        let e = read_entry(w, v).await?;
        let take = match at {
            AsOf::Version(max) => v <= max,
            AsOf::Time(t) => e
                .committed_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|c| c <= t),
        };
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
pub(crate) async fn refresh(w: &Warehouse, snap: &mut Snapshot) -> Result<bool, WarehouseError> {
    let newer: Vec<u64> = list_versions(w)
        .await?
        .into_iter()
        .filter(|v| *v > snap.version)
        .collect();
    // Read ahead (an object store answers each read in milliseconds, not microseconds),
    // folded in version order.
    let any = !newer.is_empty();
    let mut entries = futures::stream::iter(newer)
        .map(|v| read_entry(w, v))
        .buffered(READ_AHEAD);
    while let Some(e) = entries.try_next().await? {
        snap.apply(&e);
    }
    Ok(any)
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
        if try_put(w, &entry).await? {
            snap.apply(&entry);
            return Ok(entry.version);
        }
    }
}

/// Write `entry` as version `entry.version`, create-if-absent, and fsync it. `Ok(false)`:
/// another committer took that version first.
pub(crate) async fn try_put(w: &Warehouse, entry: &LogEntry) -> Result<bool, WarehouseError> {
    let p = entry_path(entry.version);
    let body = serde_json::to_vec_pretty(entry).expect("log entries serialize");
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
            Ok(true)
        }
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
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
