//! crmdq-warehouse: where checked records land, and the commit log that says what counts.
//!
//! A warehouse is a directory of Hive-partitioned Parquet files (`records/<type>/dt=D/`,
//! `dead_letters/dt=D/`, `scores/<table>/dt=D/`) plus a commit log `_crmdq_log/`. A file
//! counts only once a log entry names it: the order is file durable → log entry
//! (create-if-absent) → (Kafka offset commit, by the caller). Readers take their file list
//! from the log ([`Snapshot`]), so a file orphaned by a crash is never read. The log also
//! holds each source's committed end position, which is where consumption resumes.

mod log;
mod sink;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};

pub use log::{FileAdd, LogEntry, LogKind, Snapshot, SourcePosition};
pub use sink::{RollReason, Sink, SinkLimits, SinkStats};
pub use table::{CommittedTable, LiveSnapshot, LiveTable, register_table};

/// Name of the commit log folder inside a warehouse.
pub const LOG_DIR: &str = "_crmdq_log";

/// Infrastructure failures of the warehouse. Bad records never get here.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("warehouse {path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("warehouse: writing {path}: {source} (retry may help: {retryable})")]
    Write {
        path: String,
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("warehouse: reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A fenced commit found a partition already moved by another committer.
    #[error(
        "warehouse: {topic} [{partition}] was committed by another consumer (expected position {expected}, found {found})"
    )]
    Fenced {
        topic: String,
        partition: i32,
        expected: i64,
        found: i64,
    },
    #[error("warehouse: commit log entry {path} is corrupt: {message}")]
    CorruptLog { path: String, message: String },
    #[error("warehouse: encoding Parquet for {table}: {source}")]
    Encode {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl WarehouseError {
    /// Whether retrying the same operation may succeed (I/O trouble rather than corruption).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WarehouseError::Write {
                retryable: true,
                ..
            } | WarehouseError::Read { .. }
        )
    }
}

/// A warehouse on local disk, reached through `object_store`.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
}

impl Warehouse {
    /// Open (creating if needed) the warehouse at `root`.
    pub fn open(root: &Path) -> Result<Warehouse, WarehouseError> {
        std::fs::create_dir_all(root.join(LOG_DIR)).map_err(|source| WarehouseError::Open {
            path: root.to_path_buf(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| WarehouseError::Open {
            path: root.to_path_buf(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| WarehouseError::Open {
            path: root.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Warehouse {
            root,
            store: Arc::new(store),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Absolute path of a warehouse-relative path.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Write `bytes` at `rel` and make it durable (data and directory entry fsynced).
    pub async fn put_durable(&self, rel: &str, bytes: bytes::Bytes) -> Result<(), WarehouseError> {
        let path = object_store::path::Path::from(rel);
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| WarehouseError::Write {
                path: rel.to_string(),
                retryable: true,
                source: Box::new(e),
            })?;
        // fsync blocks on the disk: off the async workers.
        let abs = self.abs(rel);
        tokio::task::spawn_blocking(move || fsync_path(&abs))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| WarehouseError::Write {
                path: rel.to_string(),
                retryable: true,
                source: Box::new(e),
            })
    }

    /// Make `rel` and its directory entry durable (blocking).
    pub(crate) fn fsync(&self, rel: &str) -> std::io::Result<()> {
        fsync_path(&self.abs(rel))
    }

    /// Read the whole commit log.
    pub async fn snapshot(&self) -> Result<Snapshot, WarehouseError> {
        log::read_snapshot(self).await
    }

    /// Whether the warehouse takes a durable write now (a probe file in the log folder,
    /// written, fsynced and removed).
    pub async fn probe_writable(&self) -> Result<(), WarehouseError> {
        let rel = format!("{LOG_DIR}/.probe-{}", std::process::id());
        self.put_durable(&rel, bytes::Bytes::from_static(b"probe"))
            .await?;
        let _ = self
            .store
            .delete(&object_store::path::Path::from(rel.as_str()))
            .await;
        Ok(())
    }

    /// The newest commit-log version (0 when nothing was committed yet).
    pub async fn latest_version(&self) -> Result<u64, WarehouseError> {
        log::latest_version(self).await
    }

    /// Bring `snap` up to date with entries committed since it was taken (cheap when
    /// nothing changed: one folder listing). Returns whether anything was new.
    pub async fn refresh(&self, snap: &mut Snapshot) -> Result<bool, WarehouseError> {
        log::refresh(self, snap).await
    }

    /// Append an entry only if the Kafka positions in `expect` are unchanged (see
    /// [`log::commit_fenced`]); `snap` is refreshed and gets the entry.
    pub async fn commit_fenced(
        &self,
        entry: LogEntry,
        snap: &mut Snapshot,
        expect: &std::collections::BTreeMap<(String, i32), i64>,
    ) -> Result<u64, WarehouseError> {
        log::commit_fenced(self, entry, snap, expect).await
    }

    /// Append an entry to the commit log (create-if-absent; on a race, the next version).
    /// Returns the version written.
    pub async fn commit(&self, entry: LogEntry) -> Result<u64, WarehouseError> {
        log::commit(self, entry).await
    }
}

/// The Hive partition folder name for a date.
pub fn partition_dir(table_dir: &str, dt: &str) -> String {
    format!("{table_dir}/dt={dt}")
}

/// Make a written file and its directory entry durable.
fn fsync_path(abs: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(abs)?.sync_all()?;
    if let Some(dir) = abs.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
