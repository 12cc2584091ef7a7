//! `warehouse`: where checked records land and how the Parquet files are cut.

use std::path::PathBuf;
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
    /// Directory (relative to the pipeline file) or `file://` URL. `--warehouse` overrides it.
    pub path: Option<String>,
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

/// The validated `warehouse` section.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    /// Local directory of the warehouse.
    pub path: PathBuf,
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

pub(crate) fn validate(w: RawWarehouse, cx: &Ctx<'_>) -> Result<WarehouseConfig, ConfigError> {
    let path = w.path.unwrap_or_else(|| default::PATH.into());
    let path = path
        .strip_prefix("file://")
        .map_or_else(|| path.clone(), str::to_string);
    if path.contains("://") {
        return Err(cx.err(
            "warehouse.path",
            format!("`{path}`: only local paths and file:// URLs are supported in this version"),
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
        path: cx.base.join(path),
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
