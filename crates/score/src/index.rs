//! The record index: which business dates each record (a record type and id, as a 64-bit
//! fingerprint) has deliveries on, for the incremental score ([`crate::incremental`]).
//!
//! A score writes it as *runs*: files of ascending `(fingerprint, day)` pairs, each
//! 12 bytes (`u64` and `i32`, little-endian) after an 8-byte magic and a `u64` count. A
//! full score writes one run per chunk of dates (from the deliveries it reads anyway); an
//! incremental score adds one run of the records it read; when there are more than
//! [`MAX_RUNS`], they are merged into one. A lookup reads every run. Two records with one
//! fingerprint (about once in 2^64/n) only make a lookup return a date too many, which
//! costs work, never a wrong number (see `incremental`).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use crmdq_warehouse::Warehouse;
use jiff::civil::Date;
use sha2::{Digest, Sha256};

use crate::ScoreError;
use crate::bucket::fnv1a;

const MAGIC: &[u8; 8] = b"CRMDQIX1";

/// More runs than this are merged into one by the score that adds the next.
pub(crate) const MAX_RUNS: usize = 48;

/// The folder (warehouse-relative) of the incremental score's state files.
pub(crate) const STATE_DIR: &str = crmdq_warehouse::maintenance::SCORE_STATE_DIR;

/// A record's fingerprint: FNV-1a over its type's position in `RecordType::ALL`, a
/// separator and its id (stable across builds and machines).
pub(crate) fn fingerprint(type_idx: u8, id: &str) -> u64 {
    fnv1a([type_idx, 0xff].iter().chain(id.as_bytes()))
}

/// Days since 1970-01-01 of a business date (`YYYY-MM-DD`).
pub(crate) fn day_of(dt: &str) -> Option<i32> {
    let d: Date = dt.parse().ok()?;
    Some((d - jiff::civil::date(1970, 1, 1)).get_days())
}

/// The `(fingerprint, day)` pairs of `batches` (deliveries of the record type at
/// `type_idx`, with `record_id` and `dt` columns), ascending, each once. A delivery whose
/// `dt` is not a date gives day `i32::MIN` (an incremental score then falls back to a
/// full one).
pub(crate) fn pairs_of(type_idx: u8, batches: &[RecordBatch]) -> Vec<(u64, i32)> {
    let mut out = Vec::new();
    let mut days: HashMap<String, i32> = HashMap::new();
    for b in batches {
        let (Some(ids), Some(dts)) = (b.column_by_name("record_id"), b.column_by_name("dt")) else {
            continue;
        };
        let (Ok(ids), Ok(dts)) = (
            arrow::compute::cast(ids, &DataType::Utf8),
            arrow::compute::cast(dts, &DataType::Utf8),
        ) else {
            continue;
        };
        let (ids, dts) = (ids.as_string::<i32>(), dts.as_string::<i32>());
        let mut last: Option<(&str, i32)> = None;
        for r in 0..b.num_rows() {
            let dt = if dts.is_valid(r) { dts.value(r) } else { "" };
            let day = match last {
                Some((d, day)) if d == dt => day,
                _ => {
                    let day = *days
                        .entry(dt.to_string())
                        .or_insert_with(|| day_of(dt).unwrap_or(i32::MIN));
                    last = Some((dt, day));
                    day
                }
            };
            let id = if ids.is_valid(r) { ids.value(r) } else { "" };
            out.push((fingerprint(type_idx, id), day));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn encode(pairs: &[(u64, i32)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + pairs.len() * 12);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (fp, day) in pairs {
        b.extend_from_slice(&fp.to_le_bytes());
        b.extend_from_slice(&day.to_le_bytes());
    }
    b
}

/// The pairs of one run, or why it is not one.
fn decode(path: &str, bytes: &[u8]) -> Result<Vec<(u64, i32)>, String> {
    check(path, bytes)?;
    Ok(bytes[16..]
        .chunks_exact(12)
        .map(|c| (fp_of(c), day_of_pair(c)))
        .collect())
}

/// The fingerprint of a stored pair (12 bytes).
fn fp_of(c: &[u8]) -> u64 {
    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// The day of a stored pair (12 bytes).
fn day_of_pair(c: &[u8]) -> i32 {
    i32::from_le_bytes([c[8], c[9], c[10], c[11]])
}

/// Write `pairs` (ascending, each once) as a run; returns its path (content-addressed).
pub(crate) async fn write_run(w: &Warehouse, pairs: &[(u64, i32)]) -> Result<String, ScoreError> {
    let bytes = encode(pairs);
    let hash = hex::encode(&Sha256::digest(&bytes)[..12]);
    let path = format!("{STATE_DIR}/index-{hash}.bin");
    w.put_durable(&path, bytes.into()).await?;
    Ok(path)
}

/// The runs of an index, read (each as it is stored, searched in place).
pub(crate) struct Runs(Vec<bytes::Bytes>);

impl Runs {
    /// Read every run; an unreadable or damaged run is an error message (the caller then
    /// scores in full).
    pub(crate) async fn load(w: &Warehouse, runs: &[String]) -> Result<Runs, String> {
        use futures::StreamExt as _;
        // A few at a time: a year's index is ~30 runs of a few MB each.
        let out: Vec<Result<bytes::Bytes, String>> = futures::stream::iter(runs)
            .map(|path| async move {
                let bytes = w.get_bytes(path).await.map_err(|e| e.to_string())?;
                check(path, &bytes)?;
                Ok(bytes)
            })
            .buffered(4)
            .collect()
            .await;
        Ok(Runs(out.into_iter().collect::<Result<_, _>>()?))
    }

    /// Runs of the given pairs (each ascending, each once), as if read.
    #[cfg(test)]
    pub(crate) fn of(runs: &[&[(u64, i32)]]) -> Runs {
        Runs(runs.iter().map(|r| encode(r).into()).collect())
    }

    /// The `(fingerprint, day)` pairs of the records `fps` (ascending, each once) that
    /// the runs hold: ascending, each once. Many records over many runs (a day's
    /// records against a year's index): the runs are split over two threads.
    pub(crate) fn lookup(&self, fps: &[u64]) -> Vec<(u64, i32)> {
        let mut out = if self.0.len() >= 2 && fps.len() >= 4096 {
            let (a, b) = self.0.split_at(self.0.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| lookup_runs(a, fps));
                let mut out = lookup_runs(b, fps);
                match other.join() {
                    Ok(more) => out.extend(more),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                out
            })
        } else {
            lookup_runs(&self.0, fps)
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The pairs of `fps` (ascending, each once) in `runs`, unsorted.
fn lookup_runs(runs: &[bytes::Bytes], fps: &[u64]) -> Vec<(u64, i32)> {
    let (fp, day) = (fp_of, day_of_pair);
    let mut out: Vec<(u64, i32)> = Vec::new();
    for run in runs {
        let body = &run[16..];
        let n = body.len() / 12;
        // Many records (a day's): one merge over the run; few: a binary search each.
        if fps.len().saturating_mul(n.max(2).ilog2() as usize) > n + fps.len() {
            let mut j = 0;
            for c in body.chunks_exact(12) {
                let f = fp(c);
                while j < fps.len() && fps[j] < f {
                    j += 1;
                }
                if j == fps.len() {
                    break;
                }
                if fps[j] == f {
                    out.push((f, day(c)));
                }
            }
            continue;
        }
        let pair = |i: usize| &body[i * 12..i * 12 + 12];
        for &q in fps {
            // The first pair of `q`: a binary search over the fixed-size pairs.
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if fp(pair(mid)) < q {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            while lo < n && fp(pair(lo)) == q {
                out.push((q, day(pair(lo))));
                lo += 1;
            }
        }
    }
    out
}

/// Whether `bytes` is a whole run.
fn check(path: &str, bytes: &[u8]) -> Result<(), String> {
    let bad = |why: &str| format!("record index run {path}: {why}");
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("not an index run"));
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if u64::try_from(bytes.len() - 16).ok() != n.checked_mul(12) {
        return Err(bad("truncated"));
    }
    Ok(())
}

/// `runs` merged into one run (read whole: about 12 bytes per delivery of the warehouse).
pub(crate) async fn merge(w: &Warehouse, runs: &[String]) -> Result<Vec<String>, String> {
    let mut all: Vec<(u64, i32)> = Vec::new();
    for path in runs {
        let bytes = w.get_bytes(path).await.map_err(|e| e.to_string())?;
        all.extend(decode(path, &bytes)?);
    }
    all.sort_unstable();
    all.dedup();
    let path = write_run(w, &all).await.map_err(|e| e.to_string())?;
    Ok(vec![path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_and_refuse_damage() {
        let pairs = vec![(1, 10), (1, 12), (7, -3), (u64::MAX, i32::MIN)];
        let b = encode(&pairs);
        assert_eq!(decode("r", &b).unwrap(), pairs);
        assert!(
            decode("r", &b[..b.len() - 1])
                .unwrap_err()
                .contains("truncated")
        );
        assert!(decode("r", b"CRMDQIX2........").is_err());
        let runs = Runs(vec![b.into(), encode(&[(1, 11), (8, 1)]).into()]);
        // Few records (searched) and many (merged): the same answer.
        let many: Vec<u64> = (0..64).collect();
        for fps in [&[0, 1, 7, 8, 9][..], &many[..]] {
            assert_eq!(
                runs.lookup(fps),
                [(1, 10), (1, 11), (1, 12), (7, -3), (8, 1)]
            );
        }
    }

    #[test]
    fn a_lookup_over_two_threads_finds_what_one_finds() {
        // Three runs of every third, fifth and seventh fingerprint; 5,000 records asked
        // (the threaded merge) and 7 (the binary search), against the pairs themselves.
        let run = |k: u64| -> Vec<(u64, i32)> {
            (0..20_000u64)
                .filter(|f| f % k == 0)
                .map(|f| (f, i32::try_from(k).unwrap()))
                .collect()
        };
        let (a, b, c) = (run(3), run(5), run(7));
        let runs = Runs::of(&[&a, &b, &c]);
        for fps in [
            (0..5_000u64).map(|i| i * 4).collect::<Vec<_>>(),
            vec![0, 9, 10, 21, 35, 19_999, 50_000],
        ] {
            let mut want: Vec<(u64, i32)> = [&a, &b, &c]
                .iter()
                .flat_map(|r| r.iter().filter(|(f, _)| fps.binary_search(f).is_ok()))
                .copied()
                .collect();
            want.sort_unstable();
            assert!(!want.is_empty());
            assert_eq!(runs.lookup(&fps), want);
        }
    }

    #[test]
    fn pairs_are_per_type_and_date_each_once() {
        use arrow::array::StringArray;
        use arrow::datatypes::{Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, true),
            Field::new("dt", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                std::sync::Arc::new(StringArray::from(vec!["a", "a", "b", "a"])),
                std::sync::Arc::new(StringArray::from(vec![
                    "2026-01-02",
                    "2026-01-02",
                    "2026-01-02",
                    "bad",
                ])),
            ],
        )
        .unwrap();
        let p = pairs_of(3, &[b]);
        let a = fingerprint(3, "a");
        assert_eq!(p.len(), 3);
        assert!(p.contains(&(a, day_of("2026-01-02").unwrap())));
        assert!(p.contains(&(a, i32::MIN)));
        assert_ne!(fingerprint(3, "a"), fingerprint(2, "a"));
        assert_eq!(day_of("1970-01-02"), Some(1));
    }
}
