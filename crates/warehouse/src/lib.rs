//! crmdq-warehouse: where checked records land, and the commit log that says what counts.
//!
//! A warehouse is a directory of Hive-partitioned Parquet files (`records/<type>/dt=D/`,
//! `dead_letters/dt=D/`, `scores/<table>/dt=D/`) plus a commit log `_crmdq_log/`. A file
//! counts only once a log entry names it: the order is file durable → log entry
//! (create-if-absent) → (Kafka offset commit, by the caller). Readers take their file list
//! from the log ([`Snapshot`]), so a file orphaned by a crash is never read. The log also
//! holds each source's committed end position, which is where consumption resumes.

pub mod delta;
mod log;
pub mod maintenance;
mod remote;
mod sink;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};

pub use crmdq_config::Location;
pub use log::{AsOf, FileAdd, FileRemove, LogEntry, LogKind, Snapshot, SourcePosition};
pub use sink::{RollReason, Sink, SinkLimits, SinkStats};
pub use table::{CommittedTable, LiveSnapshot, LiveTable, register_table};

/// Name of the commit log folder inside a warehouse.
pub const LOG_DIR: &str = "_crmdq_log";

/// The warehouse format marker at the warehouse's root: `{"format": 2}`. Format 1 (no
/// marker, commit log only) predates the Delta tables and is converted by
/// [`Warehouse::migrate`]. Not inside [`LOG_DIR`]: readers of the log take every
/// `_crmdq_log/*.json` for an entry.
pub const FORMAT_FILE: &str = "_crmdq_format.json";

/// How long [`Warehouse::probe_writable`] waits for the store.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The format this build writes: every table is also a Delta table ([`delta`]).
pub const FORMAT: u64 = 2;

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
    #[error(
        "warehouse {path} was written by an earlier crmdq (format 1: its tables are not Delta tables yet); run `crmdq migrate --warehouse {path}` once to convert it in place (no data file is rewritten)"
    )]
    NeedsMigration { path: PathBuf },
    #[error(
        "warehouse {path} has format {found}, newer than this crmdq understands ({FORMAT}); use a newer crmdq"
    )]
    NewerFormat { path: PathBuf, found: u64 },
    #[error("warehouse: --as-of: {message}")]
    AsOf { message: String },
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
    /// A failed write that retrying may mend (I/O trouble, no answer in time).
    pub fn write(
        path: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> WarehouseError {
        WarehouseError::Write {
            path: path.into(),
            retryable: true,
            source: source.into(),
        }
    }

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

/// A warehouse on local disk or in an object store, reached through `object_store`.
#[derive(Clone)]
pub struct Warehouse {
    /// Where it was opened (for messages).
    location: Location,
    /// The root as a URL ending in `/` (`file:///…/` or `s3://bucket/prefix/`).
    url: url::Url,
    /// The canonical local folder, for a warehouse on local disk.
    local: Option<PathBuf>,
    /// The warehouse from its root: every path crmdq writes is relative to it.
    store: Arc<dyn ObjectStore>,
    /// The same storage from its top (the file system's root, the bucket), for `deltalake`
    /// (which places each table) and DataFusion's scans.
    delta_store: Arc<dyn ObjectStore>,
    /// The Delta tables opened by this process and the log as it last published it.
    delta: Arc<tokio::sync::Mutex<delta::DeltaCache>>,
    /// Folders under the root whose own entries (in their parents) were made durable by
    /// this process: a new partition folder is fsynced into its parent once.
    synced_dirs: Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// What the format marker (or its absence) says.
fn judge_format(
    at: &Location,
    marker: Option<&[u8]>,
    has_commits: bool,
) -> Result<bool, WarehouseError> {
    let path = || PathBuf::from(at.to_string());
    match marker {
        Some(bytes) => {
            let found = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("format")?.as_u64())
                .ok_or_else(|| WarehouseError::CorruptLog {
                    path: FORMAT_FILE.to_string(),
                    message: "expected {\"format\": <number>}".into(),
                })?;
            if found > FORMAT {
                return Err(WarehouseError::NewerFormat {
                    path: path(),
                    found,
                });
            }
            Ok(false)
        }
        None if has_commits => Err(WarehouseError::NeedsMigration { path: path() }),
        // A new warehouse: the marker is to be written.
        None => Ok(true),
    }
}

fn marker_body() -> bytes::Bytes {
    bytes::Bytes::from(format!("{{\"format\": {FORMAT}}}\n"))
}

impl Warehouse {
    /// Open (creating if needed) the warehouse in the local folder `root`. A warehouse of
    /// an earlier format is an error ([`WarehouseError::NeedsMigration`]) until
    /// [`Warehouse::migrate`]d.
    pub fn open(root: &Path) -> Result<Warehouse, WarehouseError> {
        let w = Self::open_local(root)?;
        w.check_format_local()?;
        Ok(w)
    }

    /// Open (creating if needed) the warehouse at `at`: a local folder (as [`open`]) or an
    /// object-store URL (`s3://bucket/prefix`, …; credentials from the location's options
    /// and the standard environment variables).
    ///
    /// [`open`]: Warehouse::open
    pub async fn connect(at: &Location) -> Result<Warehouse, WarehouseError> {
        match at {
            Location::Local(p) => Self::open(p),
            Location::Url { .. } => {
                let w = Self::open_remote(at)?;
                w.check_format_remote().await?;
                Ok(w)
            }
        }
    }

    /// Whether a crmdq warehouse is at `at` (its commit-log folder, or for an object store
    /// its format marker or a log entry), without creating anything.
    pub async fn exists(at: &Location) -> Result<bool, WarehouseError> {
        match at {
            Location::Local(p) => Ok(p.join(LOG_DIR).is_dir()),
            Location::Url { .. } => {
                let w = Self::open_remote(at)?;
                match w
                    .store
                    .head(&object_store::path::Path::from(FORMAT_FILE))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => {
                        Ok(!log::list_versions(&w).await?.is_empty())
                    }
                    Err(e) => Err(w.read_err(FORMAT_FILE, e)),
                }
            }
        }
    }

    /// The format check of a local warehouse (plain file system calls).
    fn check_format_local(&self) -> Result<(), WarehouseError> {
        let root = self.local.as_deref().expect("a local warehouse");
        let open_err = |source| WarehouseError::Open {
            path: root.to_path_buf(),
            source,
        };
        let marker = match std::fs::read(root.join(FORMAT_FILE)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(open_err(e)),
        };
        let has_commits = marker.is_none()
            && std::fs::read_dir(root.join(LOG_DIR))
                .map_err(open_err)?
                .filter_map(Result::ok)
                .any(|e| log::is_entry_name(&e.file_name().to_string_lossy()));
        if judge_format(&self.location, marker.as_deref(), has_commits)? {
            self.write_format_marker_local()?;
        }
        Ok(())
    }

    /// The format check of an object-store warehouse.
    async fn check_format_remote(&self) -> Result<(), WarehouseError> {
        let marker = match self
            .store
            .get(&object_store::path::Path::from(FORMAT_FILE))
            .await
        {
            Ok(r) => Some(r.bytes().await.map_err(|e| self.read_err(FORMAT_FILE, e))?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(self.read_err(FORMAT_FILE, e)),
        };
        let has_commits = marker.is_none() && !log::list_versions(self).await?.is_empty();
        if judge_format(&self.location, marker.as_deref(), has_commits)? {
            self.write_format_marker_remote().await?;
        }
        Ok(())
    }

    fn read_err(
        &self,
        rel: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> WarehouseError {
        WarehouseError::Read {
            path: format!("{}{rel}", self.url),
            source: Box::new(e),
        }
    }

    /// The format check, on local disk or in an object store.
    async fn check_format(&self) -> Result<(), WarehouseError> {
        if self.local.is_some() {
            self.check_format_local()
        } else {
            self.check_format_remote().await
        }
    }

    /// Write the format marker (create-if-absent: a marker already there is kept).
    async fn write_format_marker(&self) -> Result<(), WarehouseError> {
        if self.local.is_some() {
            self.write_format_marker_local()
        } else {
            self.write_format_marker_remote().await
        }
    }

    async fn write_format_marker_remote(&self) -> Result<(), WarehouseError> {
        let opts = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &object_store::path::Path::from(FORMAT_FILE),
                marker_body().into(),
                opts,
            )
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(WarehouseError::write(FORMAT_FILE.to_string(), e)),
        }
    }

    fn write_format_marker_local(&self) -> Result<(), WarehouseError> {
        let rel = FORMAT_FILE.to_string();
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.abs(&rel))
        {
            Ok(mut f) => {
                use std::io::Write as _;
                f.write_all(&marker_body())
                    .and_then(|()| f.sync_all())
                    .and_then(|()| self.fsync(&rel))
                    .map_err(|e| WarehouseError::write(rel, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(WarehouseError::write(rel, e)),
        }
    }

    /// Convert a warehouse of format 1 in place: every table gets its Delta log naming the
    /// files the commit log says are live (no data file is read for rows or rewritten),
    /// then the format marker is written. Running it again (or on a current warehouse)
    /// only repairs what is unpublished.
    pub async fn migrate(at: impl Into<Location>) -> Result<delta::Published, WarehouseError> {
        let at: Location = at.into();
        let w = match &at {
            Location::Local(p) => Self::open_local(p)?,
            Location::Url { .. } => Self::open_remote(&at)?,
        };
        let published = w.publish_all().await?;
        w.write_format_marker().await?;
        w.check_format().await?;
        Ok(published)
    }

    /// Open a local folder without looking at the format (for [`Warehouse::migrate`]).
    fn open_local(root: &Path) -> Result<Warehouse, WarehouseError> {
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
        let url = url::Url::from_directory_path(&root).map_err(|()| WarehouseError::Open {
            path: root.clone(),
            source: std::io::Error::other("not an absolute path"),
        })?;
        Ok(Warehouse {
            location: Location::Local(root.clone()),
            url,
            local: Some(root),
            store: Arc::new(store),
            delta_store: Arc::new(LocalFileSystem::new()),
            delta: Arc::default(),
            synced_dirs: Arc::default(),
        })
    }

    /// Open an object-store warehouse without looking at the format.
    fn open_remote(at: &Location) -> Result<Warehouse, WarehouseError> {
        let (url, top) = remote::stores(at)?;
        let prefix = object_store::path::Path::from(url.path());
        Ok(Warehouse {
            location: at.clone(),
            store: Arc::new(object_store::prefix::PrefixStore::new(
                Arc::clone(&top),
                prefix,
            )),
            url,
            local: None,
            delta_store: top,
            delta: Arc::default(),
            synced_dirs: Arc::default(),
        })
    }

    pub(crate) fn delta_root_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.delta_store)
    }

    /// The local folder of a warehouse on local disk (`None` for an object store).
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// The warehouse's root as a URL ending in `/` (`file:///…/`, `s3://bucket/prefix/`).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Where the warehouse was opened, as given (for messages).
    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Absolute local path of a warehouse-relative path (for an object-store warehouse,
    /// its URL as a path: only for messages).
    pub fn abs(&self, rel: &str) -> PathBuf {
        match &self.local {
            Some(root) => root.join(rel),
            None => PathBuf::from(format!("{}{rel}", self.url)),
        }
    }

    /// Where DataFusion finds a warehouse file: the object store's URL (registered by
    /// the scan) and the file's location in it.
    pub(crate) fn scan_location(&self, rel: &str) -> String {
        match &self.local {
            Some(root) => root
                .join(rel)
                .to_string_lossy()
                .trim_start_matches('/')
                .to_string(),
            None => format!("{}{rel}", self.url.path().trim_start_matches('/')),
        }
    }

    /// The object store DataFusion scans the warehouse's files through: the local file
    /// system (always registered), or the bucket's store under `scheme://bucket`.
    pub(crate) fn scan_store(
        &self,
    ) -> (
        datafusion::execution::object_store::ObjectStoreUrl,
        Option<Arc<dyn ObjectStore>>,
    ) {
        use datafusion::execution::object_store::ObjectStoreUrl;
        if self.local.is_some() {
            return (ObjectStoreUrl::local_filesystem(), None);
        }
        let top = format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default()
        );
        match ObjectStoreUrl::parse(&top) {
            Ok(u) => (u, Some(Arc::clone(&self.delta_store))),
            // Not reached: a URL warehouse always has a scheme and a bucket.
            Err(_) => (ObjectStoreUrl::local_filesystem(), None),
        }
    }

    /// Every object under the warehouse-relative folder `prefix` (recursively).
    pub(crate) async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<object_store::ObjectMeta>, WarehouseError> {
        use futures::TryStreamExt as _;
        self.store
            .list(Some(&object_store::path::Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| WarehouseError::Read {
                path: prefix.to_string(),
                source: Box::new(e),
            })
    }

    /// The whole of the object at the warehouse-relative path `rel`.
    pub async fn get_bytes(&self, rel: &str) -> Result<bytes::Bytes, WarehouseError> {
        let read = |e| WarehouseError::Read {
            path: rel.to_string(),
            source: Box::new(e),
        };
        self.store
            .get(&object_store::path::Path::from(rel))
            .await
            .map_err(read)?
            .bytes()
            .await
            .map_err(read)
    }

    /// Write `bytes` at `rel` and make it durable (data and directory entry fsynced).
    pub async fn put_durable(&self, rel: &str, bytes: bytes::Bytes) -> Result<(), WarehouseError> {
        let path = object_store::path::Path::from(rel);
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| WarehouseError::write(rel.to_string(), e))?;
        if self.local.is_none() {
            return Ok(());
        }
        // fsync blocks on the disk: off the async workers.
        let w = self.clone();
        let rel_owned = rel.to_string();
        tokio::task::spawn_blocking(move || w.fsync(&rel_owned))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| WarehouseError::write(rel.to_string(), e))
    }

    /// Make `rel`, its directory entry and (once per process) the entries of the folders
    /// above it up to the root durable (blocking). A file's own fsync does not make a
    /// folder just created for it durable: after a crash the log could name a file whose
    /// partition folder is gone.
    pub(crate) fn fsync(&self, rel: &str) -> std::io::Result<()> {
        // An object store's PUT is durable once answered.
        let Some(root) = self.local.as_deref() else {
            return Ok(());
        };
        let abs = root.join(rel);
        fsync_path(&abs)?;
        let poisoned = || std::io::Error::other("synced-folder set poisoned");
        let new = {
            let known = self.synced_dirs.lock().map_err(|_| poisoned())?;
            new_dirs(root, &abs, &known)
        };
        for dir in &new {
            if let Some(parent) = dir.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
        }
        // Known only once synced (a failed sync is tried again by the next write there).
        self.synced_dirs.lock().map_err(|_| poisoned())?.extend(new);
        Ok(())
    }

    /// Read the whole commit log.
    pub async fn snapshot(&self) -> Result<Snapshot, WarehouseError> {
        log::read_snapshot(self).await
    }

    /// The warehouse as it was at a commit-log version or instant (time travel): what a
    /// disputed score was computed from.
    pub async fn snapshot_as_of(&self, at: AsOf) -> Result<Snapshot, WarehouseError> {
        log::read_snapshot_as_of(self, at).await
    }

    /// Whether the warehouse takes a durable write now (a probe file in the log folder,
    /// written, fsynced and removed).
    pub async fn probe_writable(&self) -> Result<(), WarehouseError> {
        let rel = format!("{LOG_DIR}/.probe-{}", std::process::id());
        // Bounded: a store that does not answer is not writable (the caller probes again).
        let put = self.put_durable(&rel, bytes::Bytes::from_static(b"probe"));
        match tokio::time::timeout(PROBE_TIMEOUT, put).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(WarehouseError::write(
                    rel,
                    format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
                ));
            }
        }
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

    /// The commit-log entry of version `v` (an error if there is none).
    pub async fn entry(&self, v: u64) -> Result<LogEntry, WarehouseError> {
        log::read_entry(self, v).await
    }

    /// Append an entry only if the Kafka positions in `expect` are unchanged (see
    /// [`log::commit_fenced`]); `snap` is refreshed and gets the entry.
    pub async fn commit_fenced(
        &self,
        entry: LogEntry,
        snap: &mut Snapshot,
        expect: &std::collections::BTreeMap<(String, i32), i64>,
    ) -> Result<u64, WarehouseError> {
        let (files, replaces) = (entry.files.clone(), entry.replaces_tables.clone());
        let v = log::commit_fenced(self, entry, snap, expect).await?;
        self.publish_after_commit(&files, &replaces).await;
        Ok(v)
    }

    /// Append an entry to the commit log (create-if-absent; on a race, the next version).
    /// Returns the version written.
    pub async fn commit(&self, entry: LogEntry) -> Result<u64, WarehouseError> {
        let (files, replaces) = (entry.files.clone(), entry.replaces_tables.clone());
        let v = log::commit(self, entry).await?;
        self.publish_after_commit(&files, &replaces).await;
        Ok(v)
    }
}

/// The Hive partition folder name for a date.
pub fn partition_dir(table_dir: &str, dt: &str) -> String {
    format!("{table_dir}/dt={dt}")
}

/// The folders from `file`'s up to (not including) `root` whose entries are not in
/// `known`, deepest first. Stops at the first known one (the folders above it were known
/// before it).
fn new_dirs(root: &Path, file: &Path, known: &std::collections::HashSet<PathBuf>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || known.contains(d) {
            break;
        }
        out.push(d.to_path_buf());
        dir = d.parent();
    }
    out
}

/// Make a written file and its directory entry durable.
fn fsync_path(abs: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(abs)?.sync_all()?;
    if let Some(dir) = abs.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod dir_tests {
    use super::*;

    /// A file's folders up to the root are synced the first time only; a sibling folder
    /// stops at the shared parent; nothing above the root.
    #[test]
    fn new_folders_once_each() {
        let root = Path::new("/wh");
        let mut known = std::collections::HashSet::new();
        let f = |p: &str| PathBuf::from(p);
        // As `Warehouse::fsync` does: what is returned becomes known.
        let mut new_dirs = |file: &str| {
            let new = new_dirs(root, &f(file), &known);
            known.extend(new.clone());
            new
        };
        assert_eq!(
            new_dirs("/wh/records/customer/dt=2026-01-01/a.parquet"),
            vec![
                f("/wh/records/customer/dt=2026-01-01"),
                f("/wh/records/customer"),
                f("/wh/records")
            ]
        );
        assert!(new_dirs("/wh/records/customer/dt=2026-01-01/b.parquet").is_empty());
        assert_eq!(
            new_dirs("/wh/records/customer/dt=2026-01-02/c.parquet"),
            vec![f("/wh/records/customer/dt=2026-01-02")]
        );
        assert!(new_dirs("/wh/top.json").is_empty());
        assert!(new_dirs("/elsewhere/x/y.json").is_empty());
    }

    /// Durable writes into new folders work end to end (and the second one in a folder
    /// takes the known path).
    #[tokio::test]
    async fn put_durable_into_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        for rel in ["a/b/dt=1/x.parquet", "a/b/dt=1/y.parquet", "a/c/z.parquet"] {
            w.put_durable(rel, bytes::Bytes::from_static(b"data"))
                .await
                .unwrap();
            assert_eq!(std::fs::read(w.abs(rel)).unwrap(), b"data");
        }
        let known = w.synced_dirs.lock().unwrap().clone();
        for d in ["a/b/dt=1", "a/b", "a", "a/c"] {
            assert!(known.contains(&w.abs(d)), "{d}: {known:?}");
        }
        assert!(!known.contains(w.local_root().unwrap()));
    }
}
