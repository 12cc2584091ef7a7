//! `warehouse`: where checked records land and how the Parquet files are cut.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};
use crate::values::{Positive, Seconds};

/// Defaults of the `warehouse` section.
pub mod default {
    use std::time::Duration;
    pub const PATH: &str = "warehouse";
    pub const MAX_FILE_BYTES: u64 = 128 << 20;
    pub const MAX_FILE_ROWS: u64 = 1_000_000;
    pub const MAX_FILE_AGE: Duration = Duration::from_mins(5);
    pub const MAX_OPEN_WRITERS: u64 = 32;
    pub const MAX_BUFFERED_BYTES: u64 = 256 << 20;
    pub const ZSTD_LEVEL: i32 = 3;
    pub const ROW_GROUP_ROWS: u64 = 128 * 1024;
    /// Files closed with less Arrow data than this are LZ4_RAW (pipelines/README.md says why).
    pub const SMALL_FILE_BYTES: u64 = 128 << 10;
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWarehouse {
    /// Directory (relative to the pipeline file), `file://` URL, or an object-store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`). `--warehouse` overrides it.
    pub path: Option<String>,
    /// Object-store options for a URL warehouse (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, …: object_store's configuration keys), usually `${VAR}`s.
    /// Credentials not given here come from the standard environment variables.
    pub storage_options: Option<BTreeMap<String, String>>,
    /// A file is closed when its encoded size reaches this many bytes. Default 128 MiB.
    pub max_file_bytes: Option<Positive>,
    /// A file is closed at this many rows. Default 1,000,000.
    pub max_file_rows: Option<Positive>,
    /// A file is closed when it has been open this many seconds. Default 300.
    pub max_file_age_seconds: Option<Seconds>,
    /// At most this many files open at once; the largest is closed to make room. Default 32.
    pub max_open_writers: Option<Positive>,
    /// Buffered (not yet committed) bytes that force a commit. Default 256 MiB.
    pub max_buffered_bytes: Option<Positive>,
    /// zstd level of the Parquet files. Default 3.
    pub zstd_level: Option<i32>,
    /// Rows per Parquet row group. Default 128 Ki.
    pub row_group_rows: Option<Positive>,
    /// Files closed with less Arrow data than this are LZ4_RAW, not zstd. Default
    /// 131072 (128 KiB); 0: always zstd.
    pub small_file_bytes: Option<u64>,
}

/// Where a warehouse lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on local disk.
    Local(PathBuf),
    /// An object store: `s3://bucket/prefix` (also `s3a://`), `gs://bucket/prefix`,
    /// `az://container/prefix` (also `abfs[s]://`, `adl://`, `azure://`), with its options
    /// (object_store's configuration keys; the standard environment variables fill in the
    /// rest).
    Url {
        url: String,
        options: BTreeMap<String, String>,
    },
}

/// The URL schemes of the object stores crmdq is built with.
pub const URL_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

impl Location {
    /// A command-line `--warehouse`: a URL with a scheme (`file://` stripped to a path) or
    /// a local path.
    pub fn parse(s: &str) -> Location {
        if let Some(p) = s.strip_prefix("file://") {
            return Location::Local(PathBuf::from(p));
        }
        match s.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) =>
            {
                Location::Url {
                    url: s.to_string(),
                    options: BTreeMap::new(),
                }
            }
            _ => Location::Local(PathBuf::from(s)),
        }
    }

    /// A URL whose scheme crmdq does not write to, or without a bucket: the message.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Location::Local(_) => Ok(()),
            Location::Url { url, .. } => check_url(url),
        }
    }

    /// The local folder, if the warehouse is on local disk.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Url { .. } => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Url { url, .. } => f.write_str(url),
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::parse(&p.to_string_lossy())
    }
}

impl From<&PathBuf> for Location {
    fn from(p: &PathBuf) -> Location {
        Location::from(p.as_path())
    }
}

impl From<&Location> for Location {
    fn from(l: &Location) -> Location {
        l.clone()
    }
}

/// The validated `warehouse` section.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    /// Local directory of the warehouse; for an object-store warehouse, its URL as text
    /// (use [`WarehouseConfig::location`]).
    pub path: PathBuf,
    /// The object-store URL, when the warehouse is not on local disk.
    pub url: Option<String>,
    /// `warehouse.storage_options` (for a URL warehouse).
    pub storage_options: BTreeMap<String, String>,
    pub max_file_bytes: u64,
    pub max_file_rows: u64,
    pub max_file_age: Duration,
    pub max_open_writers: usize,
    pub max_buffered_bytes: u64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Files closed with less Arrow data than this are written with LZ4_RAW (0: never).
    pub small_file_bytes: u64,
}

impl WarehouseConfig {
    /// Where the warehouse lives (with its storage options).
    pub fn location(&self) -> Location {
        match &self.url {
            Some(url) => Location::Url {
                url: url.clone(),
                options: self.storage_options.clone(),
            },
            None => Location::Local(self.path.clone()),
        }
    }

    /// Point the warehouse elsewhere (`--warehouse`): the pipeline's storage options stay.
    pub fn set_location(&mut self, to: &Location) {
        match to {
            Location::Local(p) => {
                self.path.clone_from(p);
                self.url = None;
            }
            Location::Url { url, options } => {
                self.path = PathBuf::from(url);
                self.url = Some(url.clone());
                self.storage_options.extend(options.clone());
            }
        }
    }
}

/// Whether `url`'s scheme is one of [`URL_SCHEMES`] and it names a bucket.
pub fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if !URL_SCHEMES.contains(&scheme) {
        return Err(format!(
            "`{url}`: unknown scheme `{scheme}` (a local path, file://, or one of {})",
            URL_SCHEMES
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(format!(
            "`{url}`: no bucket (expected {scheme}://bucket/prefix)"
        ));
    }
    Ok(())
}

pub(crate) fn validate(w: RawWarehouse, cx: &Ctx<'_>) -> Result<WarehouseConfig, ConfigError> {
    let raw = w.path.unwrap_or_else(|| default::PATH.into());
    let (path, url) = match Location::parse(&raw) {
        Location::Local(p) => (cx.base.join(p), None),
        Location::Url { url, .. } => {
            check_url(&url).map_err(|m| cx.err("warehouse.path", m))?;
            (PathBuf::from(&url), Some(url))
        }
    };
    let storage_options = w.storage_options.unwrap_or_default();
    if url.is_none() && !storage_options.is_empty() {
        return Err(cx.err(
            "warehouse.storage_options",
            "only for an object-store warehouse (warehouse.path: s3://…, gs://…, az://…)",
        ));
    }
    let zstd_level = w.zstd_level.unwrap_or(default::ZSTD_LEVEL);
    if !(1..=22).contains(&zstd_level) {
        return Err(cx.err(
            "warehouse.zstd_level",
            format!("{zstd_level} is outside 1..=22"),
        ));
    }
    let n = |v: Option<Positive>, d: u64| v.map_or(d, |p| p.0);
    Ok(WarehouseConfig {
        path,
        url,
        storage_options,
        max_file_bytes: n(w.max_file_bytes, default::MAX_FILE_BYTES),
        max_file_rows: n(w.max_file_rows, default::MAX_FILE_ROWS),
        max_file_age: w
            .max_file_age_seconds
            .map_or(default::MAX_FILE_AGE, |s| s.0),
        max_open_writers: n(w.max_open_writers, default::MAX_OPEN_WRITERS) as usize,
        max_buffered_bytes: n(w.max_buffered_bytes, default::MAX_BUFFERED_BYTES),
        zstd_level,
        row_group_rows: n(w.row_group_rows, default::ROW_GROUP_ROWS) as usize,
        small_file_bytes: w.small_file_bytes.unwrap_or(default::SMALL_FILE_BYTES),
    })
}
