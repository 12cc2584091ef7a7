//! The first delivery of each record version, computed in one pass over a table's
//! deliveries in memory: what [`crmdq_catalog::views::dedup`] says in SQL, which scoring runs
//! natively because the SQL form scans the table three times (the key counts, the anti
//! join, the semi join) and Parquet decoding dominates (README "Performance"). The SQL
//! stays the definition (serve and alerts query it); `tests::native_equals_sql` holds
//! the two equal.

use std::sync::Arc;

use datafusion::common::HashMap;
use datafusion::common::hash_map::Entry;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{SortOptions, filter_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use crmdq_catalog::views::key_join;
use crmdq_schema::{RecordType, record_table_schema};
use crmdq_warehouse::{Snapshot, Warehouse, register_table};
use datafusion::datasource::MemTable;

use crate::{ScoreError, q};

/// The key a record version is identified by within one record type's table.
pub const KEY: [&str; 2] = ["record_id", "version"];

/// [`crmdq_catalog::views::DELIVERY_ORDER`], column by column.
pub const ORDER: [&str; 6] = [
    "dq_ingested_at",
    "src_topic",
    "src_partition",
    "src_offset",
    "src_file",
    "src_line",
];

/// Keep, of one table's deliveries (`batches`, with at least the [`KEY`] and [`ORDER`]
/// columns), the first delivery of each key: the smallest in [`ORDER`] (ascending, NULLs
/// last, as DataFusion orders by default); keys compare NULL-equal. Of deliveries equal
/// in every order column (which the sources never produce) the first in `batches` is
/// kept. Batches keep their order; rows keep theirs within a batch.
///
/// With `pinned` (scoring a chunk of dates, see [`Pinned`]), a delivery of a pinned key is
/// kept only if it is the pinned delivery; other keys are deduplicated as above.
pub fn first_deliveries(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    pinned: &Pinned,
    seen: Option<&mut Seen>,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let (keys, order) = converters(schema)?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let key_rows = batches
        .iter()
        .map(|b| keys.convert_columns(&columns(schema, b, &KEY)?))
        .collect::<Result<Vec<Rows>, ArrowError>>()?;
    let orders = batches
        .iter()
        .map(|b| order.convert_columns(&columns(schema, b, &ORDER)?))
        .collect::<Result<Vec<Rows>, ArrowError>>()?;
    let dts = if pinned.0.is_empty() {
        Vec::new()
    } else {
        batches
            .iter()
            .map(|b| dt_column(schema, b).cloned())
            .collect::<Result<Vec<StringArray>, ArrowError>>()?
    };
    // Key → (batch, row) of the first delivery seen so far.
    let mut first: HashMap<&[u8], (usize, usize)> = HashMap::with_capacity(total);
    let mut skipped = false;
    for (b, rows) in key_rows.iter().enumerate() {
        for (r, key) in rows.iter().enumerate() {
            if let Some((order_row, dt)) = pinned.0.get(key.data())
                && (orders[b].row(r).data() != order_row.as_slice()
                    || !dts[b].is_valid(r)
                    || dts[b].value(r) != dt)
            {
                skipped = true;
                continue;
            }
            match first.entry(key.data()) {
                Entry::Vacant(v) => {
                    v.insert((b, r));
                }
                Entry::Occupied(mut o) => {
                    let (pb, pr) = *o.get();
                    if orders[b].row(r) < orders[pb].row(pr) {
                        o.insert((b, r));
                    }
                }
            }
        }
    }
    if let Some(seen) = seen {
        // In fingerprint order, so that the lookups walk the earlier ones forward.
        let mut fps: Vec<(u64, &[u8])> = first
            .keys()
            .map(|key| (seen.fingerprint(key), *key))
            .collect();
        fps.sort_unstable_by_key(|(fp, _)| *fp);
        let mut from = 0;
        for (fp, key) in &fps {
            let (found, at) = seen.earlier.find_from(*fp, from);
            from = at;
            if found {
                seen.again.push(key.to_vec());
            }
        }
        seen.fingerprints.extend(fps.into_iter().map(|(fp, _)| fp));
    }
    if first.len() == total && !skipped {
        return Ok(batches);
    }
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for (b, r) in first.into_values() {
        keep[b][r] = true;
    }
    batches
        .iter()
        .zip(keep)
        .map(|(batch, keep)| filter_record_batch(batch, &BooleanArray::from(keep)))
        .collect()
}

/// Record versions (of one record type) delivered on more than one business date, each
/// with its first delivery (its [`ORDER`] columns in row format) and that delivery's
/// `dt`: when scoring works through the warehouse a chunk of dates at a time, a chunk
/// sees only some of such a key's deliveries, so it is told which one is the entry.
/// Keys are in row format ([`KEY`]).
#[derive(Debug, Default, Clone)]
pub struct Pinned(HashMap<Vec<u8>, (Vec<u8>, String)>);

impl Pinned {
    /// From every delivery of the keys to pin (with the [`KEY`], [`ORDER`] and `dt`
    /// columns): the first delivery of each.
    pub fn from_deliveries(
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<Pinned, ArrowError> {
        let kept = first_deliveries(schema, batches, &Pinned::default(), None)?;
        let (keys, order) = converters(schema)?;
        let mut out = HashMap::new();
        for b in &kept {
            let k = keys.convert_columns(&columns(schema, b, &KEY)?)?;
            let o = order.convert_columns(&columns(schema, b, &ORDER)?)?;
            let d = dt_column(schema, b)?;
            for r in 0..b.num_rows() {
                if d.is_valid(r) {
                    out.insert(
                        k.row(r).data().to_vec(),
                        (o.row(r).data().to_vec(), d.value(r).to_string()),
                    );
                }
            }
        }
        Ok(Pinned(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which record versions earlier chunks of a scoring run saw, as 64-bit fingerprints
/// (of the record type and the key), and what one chunk adds: its keys' fingerprints, and
/// the keys whose fingerprint an earlier chunk saw (`again`: a version delivered on dates
/// in two chunks, or, about once in 2^64/n, two versions with one fingerprint; scoring
/// resolves them exactly). About 8 bytes per record version in the warehouse.
#[derive(Debug, Default)]
pub struct Seen {
    pub earlier: std::sync::Arc<Fingerprints>,
    /// Distinguishes record types (the same key in two types is two versions).
    pub salt: u64,
    /// Ascending.
    pub fingerprints: Vec<u64>,
    /// Keys in row format ([`KEY`]).
    pub again: Vec<Vec<u8>>,
    /// With `index`: the `(fingerprint, day)` pairs of the deliveries seen
    /// ([`crate::index`]), ascending.
    pub index: bool,
    pub pairs: Vec<(u64, i32)>,
}

impl Seen {
    fn fingerprint(&self, key: &[u8]) -> u64 {
        use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
        let mut h =
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
        self.salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }
}

/// A set of 64-bit fingerprints, as one ascending array: 8 bytes each (a hash set takes
/// twice that, and twice again while it grows), filled chunk by chunk without copies
/// when its capacity is reserved up front.
#[derive(Debug, Default, Clone)]
pub struct Fingerprints(Vec<u64>);

impl Fingerprints {
    /// An empty set with room for `n` fingerprints.
    pub fn with_capacity(n: usize) -> Fingerprints {
        Fingerprints(Vec::with_capacity(n))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, fp: u64) -> bool {
        self.find_from(fp, 0).0
    }

    /// Whether `fp` is in the set, looking from position `from` on (every element
    /// before it is smaller than `fp`), and the position to look from for a larger one.
    /// Gallops: ascending lookups a few hundred elements apart touch a few cache lines
    /// each, where a binary search over the whole set misses the cache ~10 times.
    fn find_from(&self, fp: u64, from: usize) -> (bool, usize) {
        let a = &self.0;
        let from = from.min(a.len());
        let mut step = 1;
        while from + step < a.len() && a[from + step] < fp {
            step *= 2;
        }
        let lo = from + step / 2;
        let hi = (from + step + 1).min(a.len());
        let at = lo + a[lo..hi].partition_point(|x| *x < fp);
        (a.get(at) == Some(&fp), at)
    }

    /// Add `more` (ascending), merging in place from the back.
    pub fn merge(&mut self, more: &[u64]) {
        debug_assert!(more.is_sorted());
        let old = self.0.len();
        self.0.extend_from_slice(more);
        let (mut i, mut j, mut k) = (old, more.len(), self.0.len());
        // The merged tail grows from the back; `more` is read from its own slice, the
        // old elements from the front of the array, which the tail never overtakes.
        while j > 0 {
            k -= 1;
            if i > 0 && self.0[i - 1] > more[j - 1] {
                i -= 1;
                self.0[k] = self.0[i];
            } else {
                j -= 1;
                self.0[k] = more[j];
            }
        }
    }
}

/// For each key (row format) among `batches` (with the [`KEY`] columns and `dt`): the
/// chunks (`chunk_of(dt)`) its deliveries fall in.
pub fn chunks_per_key(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    chunk_of: impl Fn(&str) -> Option<usize>,
) -> Result<HashMap<Vec<u8>, std::collections::BTreeSet<usize>>, ArrowError> {
    let (keys, _) = converters(schema)?;
    let mut out: HashMap<Vec<u8>, std::collections::BTreeSet<usize>> = HashMap::new();
    for b in batches {
        let k = keys.convert_columns(&columns(schema, b, &KEY)?)?;
        let d = dt_column(schema, b)?;
        for r in 0..b.num_rows() {
            let chunk = if d.is_valid(r) {
                chunk_of(d.value(r))
            } else {
                None
            };
            let set = out.entry(k.row(r).data().to_vec()).or_default();
            set.extend(chunk);
        }
    }
    Ok(out)
}

/// `keys` (row format, [`KEY`] of `schema`) back as columns `record_id`, `version`.
pub fn key_batch(schema: &SchemaRef, keys: &[Vec<u8>]) -> Result<RecordBatch, ArrowError> {
    let (converter, _) = converters(schema)?;
    let parser = converter.parser();
    let cols = converter.convert_rows(keys.iter().map(|k| parser.parse(k)))?;
    let fields = KEY
        .iter()
        .map(|n| schema.field_with_name(n).cloned())
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        cols,
    )
}

/// The row converters for [`KEY`] and for [`ORDER`] (ascending, NULLs last).
fn converters(schema: &SchemaRef) -> Result<(RowConverter, RowConverter), ArrowError> {
    let converter = |names: &[&str], options: Option<SortOptions>| {
        let fields = names
            .iter()
            .map(|n| {
                let t = schema.field_with_name(n)?.data_type().clone();
                Ok(match options {
                    Some(o) => SortField::new_with_options(t, o),
                    None => SortField::new(t),
                })
            })
            .collect::<Result<Vec<_>, ArrowError>>()?;
        RowConverter::new(fields)
    };
    Ok((
        converter(&KEY, None)?,
        converter(
            &ORDER,
            Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        )?,
    ))
}

/// The `dt` column of `b` (whose schema is `schema`).
fn dt_column<'a>(schema: &SchemaRef, b: &'a RecordBatch) -> Result<&'a StringArray, ArrowError> {
    b.column(schema.index_of("dt")?)
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::SchemaError("dt is not Utf8".into()))
}

/// The columns `names` of `b` (whose schema is `schema`).
fn columns(
    schema: &SchemaRef,
    b: &RecordBatch,
    names: &[&str],
) -> Result<Vec<ArrayRef>, ArrowError> {
    names
        .iter()
        .map(|n| Ok(b.column(schema.index_of(n)?).clone()))
        .collect()
}

/// The record versions that chunks saw again (`again`, by position in
/// [`RecordType::ALL`]): every delivery of each, looked up in the whole warehouse. Those
/// with deliveries in more than one chunk are pinned to their first delivery; returns
/// the pins (by record type) and the chunks to score again, in order.
pub(crate) async fn resolve_again(
    w: &Warehouse,
    snap: &Snapshot,
    chunks: &[Vec<String>],
    again: &[Vec<Vec<u8>>],
) -> Result<(Vec<Arc<Pinned>>, Vec<usize>), ScoreError> {
    let chunk_of: std::collections::HashMap<&str, usize> = chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |d| (d.as_str(), i)))
        .collect();
    let ctx = crmdq_catalog::session();
    let mut pins = Vec::new();
    let mut redo = std::collections::BTreeSet::new();
    for (rt, keys) in RecordType::ALL.into_iter().zip(again) {
        if keys.is_empty() {
            pins.push(Arc::default());
            continue;
        }
        let schema = record_table_schema(rt);
        let mut schema_dt: Vec<arrow::datatypes::Field> =
            schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        schema_dt.push(arrow::datatypes::Field::new(
            "dt",
            arrow::datatypes::DataType::Utf8,
            false,
        ));
        let schema_dt: SchemaRef = Arc::new(Schema::new(schema_dt));
        let name = format!("crmdq_again_{rt}");
        let keys = key_batch(&schema_dt, keys).map_err(|e| q(&name)(e.into()))?;
        let key_schema = keys.schema();
        ctx.register_table(
            name.as_str(),
            Arc::new(MemTable::try_new(key_schema, vec![vec![keys]]).map_err(q(&name))?),
        )
        .map_err(q(&name))?;
        register_table(&ctx, w, rt.as_str(), schema, snap.files_of(rt.as_str()))
            .map_err(q(rt.as_str()))?;
        let (key_cols, on) = key_join(&KEY, "d", "k");
        let sql = format!(
            "SELECT d.record_id, d.version, d.dt, {} FROM \"{rt}\" d \
             LEFT SEMI JOIN (SELECT DISTINCT {key_cols} FROM {name}) k ON {on}",
            ORDER.map(|c| format!("d.{c}")).join(", ")
        );
        let df = ctx.sql(&sql).await.map_err(q(&name))?;
        let found_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let found = df.collect().await.map_err(q(&name))?;
        // The chunks each key's deliveries fall in.
        let pinned = Pinned::from_deliveries(&found_schema, found.clone())
            .map_err(|e| q(&name)(e.into()))?;
        let spans = chunks_per_key(&found_schema, &found, |dt| chunk_of.get(dt).copied())
            .map_err(|e| q(&name)(e.into()))?;
        for set in spans.values() {
            if set.len() > 1 {
                redo.extend(set.iter().copied());
            }
        }
        pins.push(Arc::new(pinned));
    }
    Ok((pins, redo.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    fn text(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let cols: Vec<_> = (0..b.num_columns())
                .map(|c| arrow::compute::cast(b.column(c), &DataType::Utf8).unwrap())
                .collect();
            for i in 0..b.num_rows() {
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        if c.is_valid(i) {
                            c.value(i).to_string()
                        } else {
                            "∅".to_string()
                        }
                    })
                    .collect();
                out.push(row.join("|"));
            }
        }
        out.sort();
        out
    }

    /// Merging keeps the set ascending and finds exactly what was added.
    #[test]
    fn fingerprints_merge() {
        let mut set = Fingerprints::with_capacity(8);
        set.merge(&[]);
        assert!(set.is_empty());
        set.merge(&[5, 9, 20]);
        set.merge(&[1, 9, 12, 30]);
        set.merge(&[0, u64::MAX]);
        assert_eq!(set.0, vec![0, 1, 5, 9, 9, 12, 20, 30, u64::MAX]);
        for fp in [0, 1, 5, 9, 12, 20, 30, u64::MAX] {
            assert!(set.contains(fp), "{fp}");
        }
        for fp in [2, 10, 21, u64::MAX - 1] {
            assert!(!set.contains(fp), "{fp}");
        }
        // Walking forward finds what a fresh lookup finds.
        let mut from = 0;
        for fp in [0, 3, 9, 9, 29, 30] {
            let (found, at) = set.find_from(fp, from);
            assert_eq!(found, set.contains(fp), "{fp}");
            from = at;
        }
        // A large set against sorted lookups at every distance, present and absent.
        let mut big = Fingerprints::with_capacity(0);
        let evens: Vec<u64> = (0..10_000).map(|i| i * 2).collect();
        big.merge(&evens);
        let mut from = 0;
        for fp in (0..20_010).step_by(7) {
            let (found, at) = big.find_from(fp, from);
            assert_eq!(found, fp % 2 == 0 && fp < 20_000, "{fp}");
            assert_eq!(at, big.0.partition_point(|x| *x < fp), "{fp}");
            from = at;
        }
    }

    /// Deliveries that differ in content, in every order, with NULL keys and NULL order
    /// columns, split over several batches: the native pass keeps exactly the rows the
    /// SQL definition keeps.
    #[tokio::test]
    async fn native_equals_sql() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t (record_id VARCHAR, version BIGINT, payload VARCHAR, \
               dq_ingested_at TIMESTAMP, src_topic VARCHAR, src_partition INT, src_offset BIGINT, \
               src_file VARCHAR, src_line BIGINT) AS VALUES \
             ('c1', 1, 'only', TIMESTAMP '2026-01-01 00:00:10', NULL, NULL, NULL, 'f', 1), \
             ('c2', 1, 'later', TIMESTAMP '2026-01-01 00:00:20', NULL, NULL, NULL, 'f', 2), \
             ('c2', 1, 'first', TIMESTAMP '2026-01-01 00:00:10', NULL, NULL, NULL, 'g', 9), \
             ('c2', 2, 'v2', TIMESTAMP '2026-01-01 00:00:10', NULL, NULL, NULL, 'g', 10), \
             ('o1', 1, 'k-late', TIMESTAMP '2026-01-01 00:00:05', 'crm', 0, 7, NULL, NULL), \
             ('o1', 1, 'k-early', TIMESTAMP '2026-01-01 00:00:05', 'crm', 0, 3, NULL, NULL), \
             ('o1', 1, 'k-other-partition', TIMESTAMP '2026-01-01 00:00:05', 'crm', 1, 1, NULL, NULL), \
             ('o1', 1, 'no time', NULL, 'crm', 0, 1, NULL, NULL), \
             ('o2', 1, 'no topic', TIMESTAMP '2026-01-01 00:00:05', NULL, NULL, NULL, 'f', 3), \
             ('o2', 1, 'topic', TIMESTAMP '2026-01-01 00:00:05', 'crm', 0, 9, NULL, NULL), \
             ('o3', NULL, 'null version b', TIMESTAMP '2026-01-01 00:00:02', NULL, NULL, NULL, 'f', 5), \
             ('o3', NULL, 'null version a', TIMESTAMP '2026-01-01 00:00:01', NULL, NULL, NULL, 'f', 6), \
             (NULL, 1, 'null id a', TIMESTAMP '2026-01-01 00:00:03', NULL, NULL, NULL, 'f', 7), \
             (NULL, 1, 'null id b', TIMESTAMP '2026-01-01 00:00:01', NULL, NULL, NULL, 'f', 8), \
             (NULL, 1, 'null id c', TIMESTAMP '2026-01-01 00:00:01', NULL, NULL, NULL, 'f', 9)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let cols = "record_id, version, payload, dq_ingested_at, src_topic, src_partition, \
                    src_offset, src_file, src_line";
        let want = ctx
            .sql(&crmdq_catalog::views::dedup("t", cols))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        // Small batches, so that duplicates meet across batches.
        let all = ctx
            .sql(&format!("SELECT {cols} FROM t"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let schema = all[0].schema();
        let all = arrow::compute::concat_batches(&schema, &all).unwrap();
        let mut split = Vec::new();
        let mut start = 0;
        for len in [4, 1, 6, 4] {
            split.push(all.slice(start, len));
            start += len;
        }
        assert_eq!(start, all.num_rows());
        let got = first_deliveries(&schema, split, &Pinned::default(), None).unwrap();
        assert_eq!(text(&got), text(&want));
        let got = text(&got);
        assert_eq!(got.len(), 7, "{got:?}");
        for kept in [
            "|first|",
            "|k-early|",
            "|null version a|",
            "|null id b|",
            "|topic|",
        ] {
            assert!(
                got.iter().any(|r| r.contains(kept)),
                "{kept} not kept: {got:?}"
            );
        }
    }
}
