//! What a lakehouse user expects besides writing: compacting the small files that a
//! stream of commits leaves (`optimize`) and deleting the files no version needs any more
//! (`vacuum`). Both go through the commit log like every other change, so the Delta
//! tables follow (an `optimize` is published as Delta's OPTIMIZE: `dataChange: false`).

use std::collections::{BTreeMap, HashMap, HashSet};

use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::log::{self, FileRemove};
use crate::{FileAdd, LOG_DIR, LogEntry, LogKind, Warehouse, WarehouseError};

/// What `optimize` takes on.
#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    /// Only this table (a record type, `dead_letters`, a score table…); all when `None`.
    pub table: Option<String>,
    /// Only this partition (business date); all when `None`.
    pub dt: Option<String>,
    /// A file at least this big is left alone; smaller ones of a partition are written
    /// together into files up to about this size.
    pub target_bytes: u64,
    pub zstd_level: i32,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            table: None,
            dt: None,
            target_bytes: 64 << 20,
            zstd_level: 3,
        }
    }
}

/// What `optimize` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizeSummary {
    pub files_before: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_rewritten: u64,
    /// Groups given up because another writer replaced one of their files meanwhile (a
    /// re-score): their new files are deleted, nothing is lost.
    pub conflicts: usize,
    /// The commit-log version of the optimize commit (None: nothing to do).
    pub version: Option<u64>,
}

/// Compact the small files of each partition. Safe while `run`, `ingest` or `score`
/// commit: the commit names the files it removes and is made only if they are all still
/// live (checked and written as one create-if-absent step, retried on a lost race); a
/// group whose file was replaced meanwhile is dropped, and appends never conflict.
pub async fn optimize(
    w: &Warehouse,
    opts: &OptimizeOptions,
    committed_at: String,
    writer: String,
) -> Result<OptimizeSummary, WarehouseError> {
    let mut snap = w.snapshot().await?;
    let mut summary = OptimizeSummary::default();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(opts.zstd_level).unwrap_or_default(),
        ))
        .set_created_by("crmdq optimize".to_string())
        .build();
    let mut groups: Vec<(String, String, Vec<FileAdd>)> = Vec::new();
    for (table, files) in &snap.tables {
        if opts.table.as_ref().is_some_and(|t| t != table) {
            continue;
        }
        summary.files_before += files.len();
        let mut by_dt: BTreeMap<&str, Vec<&FileAdd>> = BTreeMap::new();
        for f in files {
            if opts.dt.as_ref().is_none_or(|d| d == &f.dt) && f.bytes < opts.target_bytes {
                by_dt.entry(f.dt.as_str()).or_default().push(f);
            }
        }
        for (dt, small) in by_dt {
            // Greedy bins in commit order, each up to the target size.
            let mut bin: Vec<FileAdd> = Vec::new();
            let mut size = 0;
            for f in small {
                if !bin.is_empty() && size + f.bytes > opts.target_bytes {
                    groups.push((table.clone(), dt.to_string(), std::mem::take(&mut bin)));
                    size = 0;
                }
                size += f.bytes;
                bin.push(f.clone());
            }
            groups.push((table.clone(), dt.to_string(), bin));
        }
    }
    groups.retain(|(_, _, bin)| bin.len() > 1);
    if groups.is_empty() {
        return Ok(summary);
    }
    let prefix = format!(
        "opt-{}-{}",
        committed_at.replace([':', '-', '.', '+'], ""),
        std::process::id()
    );
    let mut adds = Vec::new();
    let mut removes: Vec<(FileAdd, FileRemove)> = Vec::new();
    for (seq, (table, dt, bin)) in groups.into_iter().enumerate() {
        let dir = crate::delta::table_dir_of(&bin[0].path)
            .unwrap_or(table.as_str())
            .to_string();
        let path = format!(
            "{}/part-{prefix}-{seq:05}.parquet",
            crate::partition_dir(&dir, &dt)
        );
        let Some(add) = rewrite(w, &table, &dt, &path, &bin, &props).await? else {
            continue; // files of different schemas: left as they are
        };
        summary.rows_rewritten += add.rows;
        for f in bin {
            let r = FileRemove {
                table: table.clone(),
                path: f.path.clone(),
            };
            removes.push((add.clone(), r));
        }
        adds.push(add);
    }
    // Commit only what is still live; a group with a file gone is dropped.
    loop {
        w.refresh(&mut snap).await?;
        let live: HashSet<&str> = snap
            .tables
            .values()
            .flatten()
            .map(|f| f.path.as_str())
            .collect();
        let gone: HashSet<String> = removes
            .iter()
            .filter(|(_, r)| !live.contains(r.path.as_str()))
            .map(|(a, _)| a.path.clone())
            .collect();
        if !gone.is_empty() {
            summary.conflicts += gone.len();
            for p in &gone {
                let _ = w
                    .store()
                    .delete(&object_store::path::Path::from(p.as_str()))
                    .await;
            }
            adds.retain(|a| !gone.contains(&a.path));
            removes.retain(|(a, _)| !gone.contains(&a.path));
        }
        if adds.is_empty() {
            return Ok(summary);
        }
        let entry = LogEntry {
            version: snap.version + 1,
            kind: LogKind::Optimize,
            committed_at: committed_at.clone(),
            writer: writer.clone(),
            files: adds.clone(),
            sources: Vec::new(),
            replaces_tables: Vec::new(),
            alerts_through: None,
            removes: removes.iter().map(|(_, r)| r.clone()).collect(),
            computed_from: None,
        };
        if log::try_put(w, &entry).await? {
            summary.files_added = adds.len();
            summary.files_removed = removes.len();
            summary.version = Some(entry.version);
            w.publish_after_commit(&entry.files, &[]).await;
            return Ok(summary);
        }
    }
}

/// Write the rows of `bin` (in order) into one new durable file at `path`. `None` when
/// the files do not share one schema.
async fn rewrite(
    w: &Warehouse,
    table: &str,
    dt: &str,
    path: &str,
    bin: &[FileAdd],
    props: &WriterProperties,
) -> Result<Option<FileAdd>, WarehouseError> {
    let mut bodies = Vec::with_capacity(bin.len());
    for f in bin {
        let read = |e: object_store::Error| WarehouseError::Read {
            path: f.path.clone(),
            source: Box::new(e),
        };
        let bytes = w
            .store()
            .get(&object_store::path::Path::from(f.path.as_str()))
            .await
            .map_err(read)?
            .bytes()
            .await
            .map_err(read)?;
        bodies.push((f.path.clone(), bytes));
    }
    let (props, tbl) = (props.clone(), table.to_string());
    let encoded =
        tokio::task::spawn_blocking(move || -> Result<Option<(Vec<u8>, u64)>, WarehouseError> {
            let enc = |source| WarehouseError::Encode {
                table: tbl.clone(),
                source,
            };
            let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
            let mut schema: Option<arrow::datatypes::SchemaRef> = None;
            let mut rows = 0u64;
            for (p, bytes) in bodies {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(ParquetRecordBatchReaderBuilder::build)
                    .map_err(|e| WarehouseError::Read {
                        path: p.clone(),
                        source: Box::new(e),
                    })?;
                for batch in reader {
                    let batch = batch.map_err(|e| WarehouseError::Read {
                        path: p.clone(),
                        source: Box::new(e),
                    })?;
                    match &schema {
                        Some(s) if *s != batch.schema() => return Ok(None),
                        Some(_) => {}
                        None => schema = Some(batch.schema()),
                    }
                    let wr = match &mut writer {
                        Some(wr) => wr,
                        None => writer.insert(
                            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone()))
                                .map_err(enc)?,
                        ),
                    };
                    rows += batch.num_rows() as u64;
                    wr.write(&batch).map_err(enc)?;
                }
            }
            match writer {
                Some(wr) => Ok(Some((wr.into_inner().map_err(enc)?, rows))),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| WarehouseError::write(path.to_string(), e))??;
    let Some((bytes, rows)) = encoded else {
        return Ok(None);
    };
    let stats = crate::delta::stats_of_file(&bytes);
    let size = bytes.len() as u64;
    w.put_durable(path, bytes.into()).await?;
    let ingested_us = bin
        .iter()
        .map(|f| f.ingested_us)
        .try_fold(None::<[i64; 2]>, |acc, r| {
            let r = r?;
            Some(Some(match acc {
                None => r,
                Some(a) => [a[0].min(r[0]), a[1].max(r[1])],
            }))
        })
        .flatten();
    Ok(Some(FileAdd {
        table: table.to_string(),
        dt: dt.to_string(),
        path: path.to_string(),
        rows,
        bytes: size,
        ingested_us,
        stats,
        rewrite: true,
    }))
}

/// What `vacuum` did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumSummary {
    /// Files deleted (warehouse-relative), sorted.
    pub deleted: Vec<String>,
    pub bytes: u64,
    /// Files kept although no longer live: removed less than the retention ago (time
    /// travel to a recent version still reads them), or never committed and younger than
    /// the retention (a writer may be about to commit them).
    pub kept_recent: usize,
}

/// Delete the data files that no version within `retention` needs: files a commit took
/// out (re-score, optimize) more than `retention` before `now`, and files no commit ever
/// named (a crash's orphans) whose modification time is older than that. Live files are
/// never touched; `--as-of` a version older than the retention may then miss files.
pub async fn vacuum(
    w: &Warehouse,
    retention: std::time::Duration,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<VacuumSummary, WarehouseError> {
    let cutoff = now
        .checked_sub(jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(jiff::Timestamp::MIN);
    // Every file the log ever named: live, or when it was taken out.
    let mut live: HashMap<String, String> = HashMap::new(); // path → table
    let mut removed_at: HashMap<String, jiff::Timestamp> = HashMap::new();
    let mut dirs: HashSet<String> = HashSet::new();
    let mut last_score: Option<serde_json::Value> = None;
    for v in log::list_versions(w).await? {
        let e = log::read_entry(w, v).await?;
        let at: jiff::Timestamp = e.committed_at.parse().unwrap_or(now);
        if e.kind == LogKind::Score {
            last_score.clone_from(&e.computed_from);
        }
        for t in &e.replaces_tables {
            let gone: Vec<String> = live
                .iter()
                .filter(|(_, table)| *table == t)
                .map(|(p, _)| p.clone())
                .collect();
            for p in gone {
                live.remove(&p);
                removed_at.insert(p, at);
            }
        }
        for r in &e.removes {
            if live.remove(&r.path).is_some() {
                removed_at.insert(r.path.clone(), at);
            }
        }
        for f in &e.files {
            if let Some(d) = crate::delta::table_dir_of(&f.path) {
                dirs.insert(d.to_string());
            }
            removed_at.remove(&f.path);
            live.insert(f.path.clone(), f.table.clone());
        }
    }
    let mut summary = VacuumSummary::default();
    for dir in dirs {
        for m in w.list(&dir).await? {
            let rel = m.location.to_string();
            // Data files only: never a Delta log, never the commit log.
            if rel.contains("/_delta_log/")
                || rel.starts_with(LOG_DIR)
                || !rel.ends_with(".parquet")
            {
                continue;
            }
            if live.contains_key(&rel) {
                continue;
            }
            let old = match removed_at.get(&rel) {
                Some(t) => *t <= cutoff,
                None => jiff::Timestamp::from_millisecond(m.last_modified.timestamp_millis())
                    .is_ok_and(|t| t <= cutoff),
            };
            if !old {
                summary.kept_recent += 1;
                continue;
            }
            delete(w, m, dry_run, &mut summary).await?;
        }
    }
    // The incremental score's state files: those the latest score does not name, older
    // than the retention (a score in progress may be about to name its new ones).
    let mut named: HashSet<String> = HashSet::new();
    if let Some(cf) = &last_score {
        state_paths(cf, &mut named);
    }
    for m in w.list(SCORE_STATE_DIR).await? {
        let rel = m.location.to_string();
        let old = jiff::Timestamp::from_millisecond(m.last_modified.timestamp_millis())
            .is_ok_and(|t| t <= cutoff);
        if named.contains(&rel) || !old {
            continue;
        }
        delete(w, m, dry_run, &mut summary).await?;
    }
    summary.deleted.sort();
    Ok(summary)
}

/// Delete one file `vacuum` found (unless `dry_run`) and count it.
async fn delete(
    w: &Warehouse,
    m: object_store::ObjectMeta,
    dry_run: bool,
    summary: &mut VacuumSummary,
) -> Result<(), WarehouseError> {
    let rel = m.location.to_string();
    if !dry_run {
        w.store()
            .delete(&m.location)
            .await
            .map_err(|e| WarehouseError::write(rel.clone(), e))?;
    }
    summary.bytes += m.size;
    summary.deleted.push(rel);
    Ok(())
}

/// The folder of the incremental score's state files (see `crmdq-score`).
pub const SCORE_STATE_DIR: &str = "_crmdq_score";

/// Every string in `v` naming a file in [`SCORE_STATE_DIR`].
fn state_paths(v: &serde_json::Value, out: &mut HashSet<String>) {
    match v {
        serde_json::Value::String(s) if s.starts_with(&format!("{SCORE_STATE_DIR}/")) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| state_paths(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| state_paths(x, out)),
        _ => {}
    }
}
