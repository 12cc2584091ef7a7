//! The Delta Lake face of the warehouse: every table (`records/<type>`, `dead_letters`,
//! `scores/<table>`, `alerts`) is also a Delta table, so Spark, Trino, DuckDB, Polars or
//! pandas read exactly the committed rows.
//!
//! **Design: the multi-table commit log stays the single source of truth; each commit is
//! then published to every table it touches.** One crmdq commit covers several tables at
//! once (records of several types, dead letters) and carries the Kafka positions; Delta
//! commits are per table. Publishing brings a table's Delta log to the table's state at a
//! crmdq log version `V` in *one* Delta commit (the difference between the Delta table's
//! live files and the log's: adds, and removes for a re-score's replaced files) carrying
//! the application transaction `txn {appId: "crmdq", version: V}`. So:
//!
//! - a Delta table's `crmdq` transaction version says which crmdq commit it shows, all of
//!   it and nothing after it (one Delta commit is atomic);
//! - publishing is idempotent and only moves forward: a table whose transaction version is
//!   already `≥ V` is left alone, and two publishers racing for the same Delta version are
//!   told apart by Delta's create-if-absent commit (the loser reloads and looks again);
//! - a crash between the crmdq commit and its publication (or a failed publication) is
//!   repaired by the next publication, which every writer runs when it starts
//!   ([`Warehouse::publish_all`]) — a file the log never named (a crash orphan) is never
//!   published, so an outside reader never sees it either.
//!
//! The Delta log itself (protocol, metadata, commit files, checkpoints, conflict detection,
//! log clean-up) is written by `deltalake` (delta-rs); crmdq writes the data files with its
//! own Parquet writer and hands them over as add actions, as kafka-delta-ingest does.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Add, StructType, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::{FileAdd, Snapshot, Warehouse, WarehouseError};

/// The application id of crmdq's transactions in every table's Delta log; its version is
/// the crmdq commit-log version the table shows.
pub const APP_ID: &str = "crmdq";

/// The partition column of every table.
pub const PARTITION_COLUMN: &str = "dt";

/// The table folder of a warehouse-relative data file path (`records/customer` for
/// `records/customer/dt=2026-11-26/part-….parquet`).
pub fn table_dir_of(path: &str) -> Option<&str> {
    path.find("/dt=").map(|i| &path[..i])
}

/// What one publication did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Tables whose Delta log got a commit.
    pub tables: usize,
    pub adds: usize,
    pub removes: usize,
    /// Tables already at (or past) the version: nothing to do.
    pub up_to_date: usize,
}

/// Tables published at the same time (each is its own Delta log).
const PUBLISH_AT_ONCE: usize = 8;

/// The Delta tables this process has opened (kept loaded: the next publication only
/// reads the commits since).
#[derive(Default)]
pub(crate) struct DeltaCache {
    tables: HashMap<String, Cached>,
    /// The crmdq log as far as this process has read it (for publishing).
    snap: Option<Snapshot>,
    /// Tables whose last publication failed (retried by the next one).
    dirty: HashSet<String>,
}

fn delta_err(dir: &str, e: impl std::error::Error + Send + Sync + 'static) -> WarehouseError {
    WarehouseError::write(format!("{dir}/_delta_log"), e)
}

impl Warehouse {
    /// The URL of a table folder (what `deltalake` and other engines open).
    pub fn table_url(&self, dir: &str) -> url::Url {
        self.url()
            .join(&format!("{dir}/"))
            .expect("table folders are relative paths")
    }

    /// An unloaded handle on the Delta table in `dir`.
    fn delta_handle(&self, dir: &str) -> Result<DeltaTable, WarehouseError> {
        let url = self.table_url(dir);
        DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| b.with_storage_backend(self.delta_root_store(), url).build())
            .map_err(|e| delta_err(dir, e))
    }

    /// The Delta table in `dir` at its latest version, or `None` when it has no Delta log.
    pub async fn delta_table(&self, dir: &str) -> Result<Option<DeltaTable>, WarehouseError> {
        // Look before loading: delta-rs logs an error for a folder without a Delta log.
        let log = object_store::path::Path::from(format!("{dir}/_delta_log"));
        match self.store().list_with_delimiter(Some(&log)).await {
            Ok(l) if !l.objects.is_empty() => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(WarehouseError::Read {
                    path: log.to_string(),
                    source: Box::new(e),
                });
            }
        }
        let mut t = self.delta_handle(dir)?;
        match t.load().await {
            Ok(()) => Ok(Some(t)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(WarehouseError::Read {
                path: format!("{dir}/_delta_log"),
                source: Box::new(e),
            }),
        }
    }

    /// The `crmdq` transaction version in the newest commit of the table's Delta log, read
    /// without loading the table (one listing, one read). `None` if there is no Delta log,
    /// the newest commit has no `crmdq` transaction (another engine wrote it) or anything
    /// fails: then the table is loaded.
    async fn newest_txn(&self, dir: &str) -> Option<i64> {
        let log = object_store::path::Path::from(format!("{dir}/_delta_log"));
        let listed = self.store().list_with_delimiter(Some(&log)).await.ok()?;
        let newest = listed
            .objects
            .iter()
            .filter(|m| {
                m.location
                    .filename()
                    .and_then(|n| n.strip_suffix(".json"))
                    .is_some_and(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
            })
            .max_by(|a, b| a.location.cmp(&b.location))?;
        let body = self
            .store()
            .get(&newest.location)
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        std::str::from_utf8(&body).ok()?.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let txn = v.get("txn")?;
            (txn.get("appId")?.as_str()? == APP_ID).then(|| txn.get("version")?.as_i64())?
        })
    }

    /// Publish the commit-log state to the Delta log of every table it names (see the
    /// module documentation). Run by every writer when it starts and by `crmdq migrate`.
    pub async fn publish_all(&self) -> Result<Published, WarehouseError> {
        self.publish(None, &[]).await
    }

    /// Publish the tables `touched` (all when `None`, and always those whose last
    /// publication failed) at the newest log version. `known` are files whose Delta
    /// statistics are at hand (the commit just written); others' are read from their
    /// Parquet footers.
    pub(crate) async fn publish(
        &self,
        touched: Option<&HashSet<String>>,
        known: &[FileAdd],
    ) -> Result<Published, WarehouseError> {
        let mut cache = self.delta.lock().await;
        let cache = &mut *cache;
        // The first publication of a process looks at every table: whatever an earlier
        // process committed but did not publish (a crash between the two) is published now.
        let touched = if cache.snap.is_none() { None } else { touched };
        let snap = match &mut cache.snap {
            Some(s) => {
                self.refresh(s).await?;
                s
            }
            None => cache.snap.insert(self.snapshot().await?),
        };
        let stats: HashMap<&str, &str> = known
            .iter()
            .filter_map(|f| Some((f.path.as_str(), f.stats.as_deref()?)))
            .collect();
        let mut out = Published::default();
        let mut first_err = None;
        // The tables are published at once (each its own Delta log: independent), at most
        // PUBLISH_AT_ONCE at a time; each job owns its table's cache entry meanwhile.
        let jobs: Vec<_> = snap
            .dirs
            .iter()
            .filter(|(name, _)| {
                touched.is_none_or(|t| t.contains(*name)) || cache.dirty.contains(*name)
            })
            .map(|(name, dir)| {
                let slot: HashMap<String, Cached> = cache
                    .tables
                    .remove(dir)
                    .map(|c| (dir.clone(), c))
                    .into_iter()
                    .collect();
                (name.clone(), dir.clone(), slot)
            })
            .collect();
        let snap = &*snap;
        let stats = &stats;
        let done: Vec<_> = futures::stream::iter(jobs)
            .map(|(name, dir, mut slot)| async move {
                // Not loaded yet: a look at the newest Delta commit tells whether the
                // table already shows its last change (loading a table costs far more).
                if slot.is_empty()
                    && let Some(at) = self.newest_txn(&dir).await
                    && snap.changed_at.get(&name).is_some_and(|v| at >= *v as i64)
                {
                    return (name, dir, Ok(None), slot);
                }
                let r = publish_table(self, &mut slot, &dir, snap, &name, stats).await;
                (name, dir, r, slot)
            })
            .buffer_unordered(PUBLISH_AT_ONCE)
            .collect()
            .await;
        for (name, dir, r, mut slot) in done {
            match r {
                Ok(Some((adds, removes))) => {
                    cache.dirty.remove(&name);
                    out.tables += 1;
                    out.adds += adds;
                    out.removes += removes;
                }
                Ok(None) => {
                    cache.dirty.remove(&name);
                    out.up_to_date += 1;
                }
                Err(e) => {
                    slot.clear();
                    cache.dirty.insert(name);
                    first_err.get_or_insert(e);
                }
            }
            if let Some(c) = slot.remove(&dir) {
                cache.tables.insert(dir, c);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// After a commit: publish what it touched. A failure is logged, not returned (the
    /// commit itself stands; the next publication repairs the table).
    pub(crate) async fn publish_after_commit(&self, files: &[FileAdd], replaces: &[String]) {
        let touched: HashSet<String> = files
            .iter()
            .map(|f| f.table.clone())
            .chain(replaces.iter().cloned())
            .collect();
        // A one-shot command (ingest, score) has no next commit to repair a table: a
        // failure (an object store's blip) is tried again twice before it is left to the
        // next writer.
        for wait in [Some(500), Some(2000), None] {
            let Err(e) = self.publish(Some(&touched), files).await else {
                return;
            };
            if let Some(ms) = wait {
                tracing::info!(error = %e, retry_in_ms = ms, "publishing to the Delta logs failed");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            } else {
                tracing::warn!(
                    error = %e,
                    "publishing the commit to the tables' Delta logs failed; the next commit or start retries it"
                );
            }
        }
    }
}

/// A Delta table as this process last saw it, and the `crmdq` transaction version that
/// state shows. Kept between publications: the next one commits against it directly (one
/// write), and only a lost race (another writer committed) reloads it.
pub(crate) struct Cached {
    table: DeltaTable,
    txn: i64,
}

/// Load the table in `dir` and read its `crmdq` transaction version (`None`: no Delta log).
async fn load(w: &Warehouse, dir: &str) -> Result<Option<Cached>, WarehouseError> {
    let Some(table) = w.delta_table(dir).await? else {
        return Ok(None);
    };
    let txn = txn_of(&table, dir).await?;
    Ok(Some(Cached { table, txn }))
}

async fn txn_of(table: &DeltaTable, dir: &str) -> Result<i64, WarehouseError> {
    let state = table.snapshot().map_err(|e| read_err(dir, e))?;
    Ok(state
        .transaction_version(table.log_store().as_ref(), APP_ID)
        .await
        .map_err(|e| read_err(dir, e))?
        .unwrap_or(-1))
}

/// Bring one table's Delta log to the snapshot's state. `Ok(None)`: already there.
async fn publish_table(
    w: &Warehouse,
    tables: &mut HashMap<String, Cached>,
    dir: &str,
    snap: &Snapshot,
    name: &str,
    known_stats: &HashMap<&str, &str>,
) -> Result<Option<(usize, usize)>, WarehouseError> {
    let version = snap.version as i64;
    let prefix = format!("{dir}/");
    let wanted: BTreeMap<&str, &FileAdd> = snap
        .files_of(name)
        .iter()
        .filter_map(|f| Some((f.path.strip_prefix(&prefix)?, f)))
        .collect();
    loop {
        if !tables.contains_key(dir)
            && let Some(c) = load(w, dir).await?
        {
            tables.insert(dir.to_string(), c);
        }
        let Some(cached) = tables.get_mut(dir) else {
            // No Delta log yet: create the table with its files.
            let Some(first) = wanted.values().next() else {
                return Ok(None);
            };
            let schema = file_schema(w, &first.path).await?;
            let adds = adds_of(w, &wanted, known_stats).await?;
            let n = adds.len();
            match create(w, dir, &schema, adds, version).await {
                Ok(_) => {
                    // The table the create returns may not list its files (adding them
                    // again would double them): the next publication loads it (once).
                    return Ok(Some((n, 0)));
                }
                // Created meanwhile by another writer: load it and look again. (delta-rs
                // says so either as a lost version-0 commit or, when the other create
                // landed before this one looked, as "a table already exists".)
                Err(DeltaTableError::Transaction { source }) if lost_race(&source) => continue,
                Err(e) => match load(w, dir).await? {
                    Some(c) => {
                        tables.insert(dir.to_string(), c);
                        continue;
                    }
                    None => return Err(delta_err(dir, e)),
                },
            }
        };
        if cached.txn >= version {
            return Ok(None);
        }
        let state = cached.table.snapshot().map_err(|e| read_err(dir, e))?;
        let log_store = cached.table.log_store();
        let live: HashSet<String> = state
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        let missing: BTreeMap<&str, &FileAdd> = wanted
            .iter()
            .filter(|(p, _)| !live.contains(**p))
            .map(|(p, f)| (*p, *f))
            .collect();
        // Files whose rows moved into `optimize`'s new files are no data change (as with
        // Delta's OPTIMIZE); a re-score's replaced files are.
        let compaction = !missing.is_empty() && missing.values().all(|f| f.rewrite);
        let mut actions: Vec<Action> = state
            .log_data()
            .iter()
            .filter(|f| !wanted.contains_key(f.path().as_ref()))
            .map(|f| Action::Remove(f.remove_action(!compaction)))
            .collect();
        let removes = actions.len();
        if removes == 0 && missing.is_empty() {
            // Already the log's state (a re-score that changed nothing): no empty commit.
            return Ok(None);
        }
        let adds = adds_of(w, &missing, known_stats).await?;
        let n = adds.len();
        actions.extend(adds.into_iter().map(Action::Add));
        let op = if compaction {
            DeltaOperation::Optimize {
                predicate: None,
                target_size: 0,
            }
        } else {
            DeltaOperation::Write {
                mode: if removes > 0 {
                    SaveMode::Overwrite
                } else {
                    SaveMode::Append
                },
                partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
                predicate: None,
            }
        };
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(APP_ID, version))
            .with_metadata([("crmdq_version".to_string(), json!(version))]);
        let r = CommitBuilder::from(props)
            .with_actions(actions)
            .with_max_retries(0)
            .build(Some(state), log_store, op)
            .await;
        match r {
            Ok(done) => {
                cached.table.state = Some(done.snapshot);
                cached.txn = version;
                return Ok(Some((n, removes)));
            }
            // Another publisher took that Delta version: reload and look again (it may
            // have published this very state).
            Err(DeltaTableError::Transaction { source }) if lost_race(&source) => {
                cached
                    .table
                    .update_state()
                    .await
                    .map_err(|e| read_err(dir, e))?;
                cached.txn = txn_of(&cached.table, dir).await?;
            }
            Err(e) => return Err(delta_err(dir, e)),
        }
    }
}

fn lost_race(e: &TransactionError) -> bool {
    matches!(
        e,
        TransactionError::VersionAlreadyExists(_) | TransactionError::MaxCommitAttempts(_)
    )
}

fn read_err(dir: &str, e: DeltaTableError) -> WarehouseError {
    WarehouseError::Read {
        path: format!("{dir}/_delta_log"),
        source: Box::new(e),
    }
}

/// Create the Delta table in `dir` with `adds`, at crmdq version `version`.
async fn create(
    w: &Warehouse,
    dir: &str,
    file_schema: &Schema,
    adds: Vec<Add>,
    version: i64,
) -> Result<DeltaTable, DeltaTableError> {
    let mut fields: Vec<Field> = file_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
    let schema: StructType = (&Schema::new(fields)).try_into_kernel()?;
    let handle = w
        .delta_handle(dir)
        .map_err(|e| DeltaTableError::Generic(format!("opening {dir}: {e}")))?;
    let props = CommitProperties::default()
        .with_application_transaction(Transaction::new(APP_ID, version))
        .with_metadata([("crmdq_version".to_string(), json!(version))])
        // A create that loses the race must fail, not retry as the next version (that
        // would add the same files twice): the caller loads the winner's table instead.
        .with_max_retries(0);
    CreateBuilder::new()
        .with_log_store(handle.log_store())
        .with_table_name(dir.rsplit('/').next().unwrap_or(dir))
        .with_columns(schema.fields().cloned())
        .with_partition_columns([PARTITION_COLUMN])
        // Statistics of every column are written; let readers use them all.
        .with_configuration_property(
            deltalake_core::TableProperty::DataSkippingNumIndexedCols,
            Some("-1"),
        )
        .with_actions(adds.into_iter().map(Action::Add))
        .with_commit_properties(props)
        .await
}

/// The add actions of `files` (table-relative path → file).
async fn adds_of(
    w: &Warehouse,
    files: &BTreeMap<&str, &FileAdd>,
    known_stats: &HashMap<&str, &str>,
) -> Result<Vec<Add>, WarehouseError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut out = Vec::with_capacity(files.len());
    for (rel, f) in files {
        let stats = if let Some(s) = known_stats.get(f.path.as_str()) {
            Some((*s).to_string())
        } else {
            stats_json(&footer(w, &f.path).await?)
        };
        out.push(Add {
            path: rel.to_string(),
            partition_values: HashMap::from([(PARTITION_COLUMN.to_string(), Some(f.dt.clone()))]),
            size: f.bytes as i64,
            modification_time: now,
            data_change: !f.rewrite,
            stats,
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        });
    }
    Ok(out)
}

/// A data file's Parquet footer (its tail only is read).
async fn footer(w: &Warehouse, rel: &str) -> Result<ParquetMetaData, WarehouseError> {
    let read = |e: Box<dyn std::error::Error + Send + Sync>| WarehouseError::Read {
        path: rel.to_string(),
        source: e,
    };
    let loc = object_store::path::Path::from(rel);
    let size = w
        .store()
        .head(&loc)
        .await
        .map_err(|e| read(Box::new(e)))?
        .size;
    let mut want = size.min(64 << 10);
    loop {
        let tail = w
            .store()
            .get_range(&loc, size - want..size)
            .await
            .map_err(|e| read(Box::new(e)))?;
        let n = tail.len();
        if n < 8 || &tail[n - 4..] != b"PAR1" {
            return Err(read("not a Parquet file".into()));
        }
        let len = u64::from(u32::from_le_bytes(
            tail[n - 8..n - 4].try_into().expect("4 bytes"),
        ));
        if len + 8 > want {
            if len + 8 > size {
                return Err(read("Parquet footer longer than the file".into()));
            }
            want = len + 8;
            continue;
        }
        let start = n - 8 - len as usize;
        return ParquetMetaDataReader::decode_metadata(&tail[start..n - 8])
            .map_err(|e| read(Box::new(e)));
    }
}

/// The Arrow schema a data file was written with (`dt` not included: it is the partition).
async fn file_schema(w: &Warehouse, rel: &str) -> Result<Schema, WarehouseError> {
    let meta = footer(w, rel).await?;
    let fm = meta.file_metadata();
    parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata()).map_err(
        |e| WarehouseError::Read {
            path: rel.to_string(),
            source: Box::new(e),
        },
    )
}

/// The Delta statistics ([`stats_json`]) of an encoded Parquet file held in memory (its
/// footer is decoded; nothing is read twice). `None` if `file` is not a Parquet file.
pub fn stats_of_file(file: &[u8]) -> Option<String> {
    let n = file.len();
    let tail: [u8; 8] = file.get(n.checked_sub(8)?..)?.try_into().ok()?;
    if &tail[4..] != b"PAR1" {
        return None;
    }
    let len = u32::from_le_bytes(tail[..4].try_into().ok()?) as usize;
    let footer = file.get(n.checked_sub(8 + len)?..n - 8)?;
    stats_json(&ParquetMetaDataReader::decode_metadata(footer).ok()?)
}

/// Longest string kept as a minimum or maximum in the statistics (as Delta writers do).
const MAX_STAT_CHARS: usize = 32;

/// The Delta statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`) of a data
/// file, from its Parquet footer: the file-skipping information other engines use. Only
/// top-level columns; a minimum or maximum is left out where it would be inexact in the
/// wrong direction (a truncated maximum, a timestamp maximum is rounded up to the
/// millisecond Delta keeps).
pub fn stats_json(meta: &ParquetMetaData) -> Option<String> {
    let fm = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata()).ok()?;
    let mut min = Map::new();
    let mut max = Map::new();
    let mut nulls = Map::new();
    let descr = fm.schema_descr();
    for (i, col) in descr.columns().iter().enumerate() {
        let parts = col.path().parts();
        let [name] = parts else { continue };
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        let (mut lo, mut hi): (Option<Value>, Option<Value>) = (None, None);
        let (mut lo_known, mut hi_known) = (true, true);
        let mut null_count = 0u64;
        let mut counted = true;
        for (k, rg) in meta.row_groups().iter().enumerate() {
            let Some(s) = rg.column(i).statistics() else {
                (lo_known, hi_known, counted) = (false, false, false);
                break;
            };
            match s.null_count_opt() {
                Some(n) => null_count += n,
                None => counted = false,
            }
            let (a, b) = bounds(field.data_type(), s);
            let (a, b) = (
                a.filter(|_| s.min_is_exact()),
                b.filter(|_| s.max_is_exact()),
            );
            lo_known &= a.is_some();
            hi_known &= b.is_some();
            lo = if k == 0 { a } else { pick(lo, a, true) };
            hi = if k == 0 { b } else { pick(hi, b, false) };
        }
        if counted {
            nulls.insert(name.clone(), json!(null_count));
        }
        if let Some(v) = lo.filter(|_| lo_known) {
            min.insert(name.clone(), v);
        }
        if let Some(v) = hi.filter(|_| hi_known) {
            max.insert(name.clone(), v);
        }
    }
    let rows: i64 = meta
        .row_groups()
        .iter()
        .map(parquet::file::metadata::RowGroupMetaData::num_rows)
        .sum();
    Some(
        json!({"numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls})
            .to_string(),
    )
}

/// The smaller (`lower`) or larger of two bounds (`None` if either is unknown).
fn pick(a: Option<Value>, b: Option<Value>, lower: bool) -> Option<Value> {
    let (a, b) = (a?, b?);
    let a_wins = match (&a, &b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                if lower { x <= y } else { x >= y }
            } else {
                let (x, y) = (x.as_f64()?, y.as_f64()?);
                if lower { x <= y } else { x >= y }
            }
        }
        // Strings, dates and timestamps (one fixed format) order as text.
        (Value::String(x), Value::String(y)) => {
            if lower {
                x <= y
            } else {
                x >= y
            }
        }
        _ => return None,
    };
    Some(if a_wins { a } else { b })
}

/// A row group's (min, max) of one column as Delta statistics values.
fn bounds(dt: &DataType, s: &Statistics) -> (Option<Value>, Option<Value>) {
    match (dt, s) {
        (DataType::Int64, Statistics::Int64(v)) => {
            (v.min_opt().map(|x| json!(x)), v.max_opt().map(|x| json!(x)))
        }
        (DataType::Int32, Statistics::Int32(v)) => {
            (v.min_opt().map(|x| json!(x)), v.max_opt().map(|x| json!(x)))
        }
        (DataType::Float64, Statistics::Double(v)) => (
            v.min_opt().filter(|x| x.is_finite()).map(|x| json!(x)),
            v.max_opt().filter(|x| x.is_finite()).map(|x| json!(x)),
        ),
        (DataType::Date32, Statistics::Int32(v)) => (
            v.min_opt().and_then(|d| date(*d)),
            v.max_opt().and_then(|d| date(*d)),
        ),
        (DataType::Timestamp(TimeUnit::Microsecond, Some(_)), Statistics::Int64(v)) => (
            v.min_opt().and_then(|us| timestamp_ms(us.div_euclid(1000))),
            v.max_opt()
                .and_then(|us| timestamp_ms(us.div_euclid(1000) + i64::from(us % 1000 != 0))),
        ),
        (DataType::Utf8, Statistics::ByteArray(v)) => {
            let text = |b: &parquet::data_type::ByteArray| {
                std::str::from_utf8(b.data()).ok().map(str::to_string)
            };
            let lo = v.min_opt().and_then(text).map(|t| {
                // A prefix is still a lower bound.
                json!(t.chars().take(MAX_STAT_CHARS).collect::<String>())
            });
            let hi = v
                .max_opt()
                .and_then(text)
                .filter(|t| t.chars().count() <= MAX_STAT_CHARS)
                .map(|t| json!(t));
            (lo, hi)
        }
        _ => (None, None),
    }
}

fn date(days: i32) -> Option<Value> {
    let d = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .ok()?;
    Some(json!(d.to_string()))
}

fn timestamp_ms(ms: i64) -> Option<Value> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(json!(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
}
