//! Input files: format detection, transparent gunzip, numbered lines.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::SourceError;

/// The format of an input file, from its name (a trailing `.gz` is looked through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Ndjson,
    Csv,
}

#[allow(clippy::case_sensitive_file_extension_comparisons)] // `name` is lower-cased above
pub fn detect_format(path: &Path) -> Result<InputFormat, SourceError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") || name.ends_with(".json") {
        Ok(InputFormat::Ndjson)
    } else if name.ends_with(".csv") || name.ends_with(".tsv") || name.ends_with(".txt") {
        Ok(InputFormat::Csv)
    } else {
        Err(SourceError::Format {
            path: path.display().to_string(),
        })
    }
}

/// Open a file for reading, gunzipping it if it starts with the gzip magic bytes.
pub fn open(path: &Path) -> Result<Box<dyn BufRead + Send>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let head = f.fill_buf().map_err(io)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(f),
        )))
    } else {
        Ok(Box::new(f))
    }
}

/// Size of a file in bytes (for progress reporting).
pub fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Numbered lines of a stream: `(line, bytes)` with the line ending removed. Blank lines
/// are skipped (they carry no message) but still counted.
pub struct Lines<R> {
    reader: R,
    line: i64,
    buf: Vec<u8>,
    path: String,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R, path: &str) -> Self {
        Lines {
            reader,
            line: 0,
            buf: Vec::with_capacity(4096),
            path: path.to_string(),
        }
    }

    /// The next non-blank line, or None at the end.
    pub fn next_line(&mut self) -> Result<Option<(i64, &[u8])>, SourceError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| SourceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let mut end = self.buf.len();
            while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if self.buf[..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((self.line, &self.buf[..end])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn numbered_lines_skip_blanks_and_strip_crlf() {
        let data = b"a\r\n\n  \nb\nc";
        let mut l = Lines::new(&data[..], "x");
        let mut got = Vec::new();
        while let Some((n, b)) = l.next_line().unwrap() {
            got.push((n, b.to_vec()));
        }
        assert_eq!(
            got,
            vec![(1, b"a".to_vec()), (4, b"b".to_vec()), (5, b"c".to_vec())]
        );
    }

    #[test]
    fn gzip_is_detected_by_magic() {
        let dir = std::env::temp_dir().join(format!("crmdq-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.ndjson.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}\n").unwrap();
        enc.finish().unwrap();
        assert_eq!(detect_format(&p).unwrap(), InputFormat::Ndjson);
        assert_eq!(read_all(open(&p).unwrap()).unwrap(), b"{\"a\":1}\n");
        assert!(detect_format(Path::new("x.parquet")).is_err());
    }
}
