//! The first delivery of each record version, computed in one pass over a table's
//! deliveries in memory: what [`crmdq_catalog::views::dedup`] says in SQL, which scoring runs
//! natively because the SQL form scans the table three times (the key counts, the anti
//! join, the semi join) and Parquet decoding dominates (README "Performance"). The SQL
//! stays the definition (serve and alerts query it); `tests::native_equals_sql` holds
//! the two equal.

use std::sync::Arc;

use datafusion::common::HashMap;
use datafusion::common::hash_map::Entry;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
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
    let dts = if pinned.0.is_empty() {
        Vec::new()
    } else {
        batches
            .iter()
            .map(|b| dt_column(schema, b).cloned())
            .collect::<Result<Vec<StringArray>, ArrowError>>()?
    };
    // Key → (batch, row) of its first delivery. Most keys are delivered once: only the
    // keys met more than once, and the pinned ones, are decided by their [`ORDER`]
    // columns, converted for those rows alone (converting them for every row took as
    // much memory as the rows themselves).
    let mut first: HashMap<&[u8], (usize, usize)> = HashMap::with_capacity(total);
    // Every delivery of such a key, in batch and row order.
    let mut contested: HashMap<&[u8], Vec<(usize, usize)>> = HashMap::new();
    for (b, rows) in key_rows.iter().enumerate() {
        for (r, key) in rows.iter().enumerate() {
            let key = key.data();
            if !pinned.0.is_empty() && pinned.0.contains_key(key) {
                contested.entry(key).or_default().push((b, r));
                continue;
            }
            match first.entry(key) {
                Entry::Vacant(v) => {
                    v.insert((b, r));
                }
                Entry::Occupied(o) => contested
                    .entry(key)
                    .or_insert_with(|| vec![*o.get()])
                    .push((b, r)),
            }
        }
    }
    let mut skipped = false;
    if !contested.is_empty() {
        let orders = contested_orders(schema, &batches, &order, &contested)?;
        let order_of = |b: usize, r: usize| {
            let (at, rows) = &orders[b];
            at.binary_search(&r)
                .map(|i| rows.row(i))
                .map_err(|_| ArrowError::ComputeError("a contested row was not converted".into()))
        };
        for (key, rows) in &contested {
            let pin = pinned.0.get(*key);
            let mut best: Option<((usize, usize), arrow::row::Row<'_>)> = None;
            for &(b, r) in rows {
                let o = order_of(b, r)?;
                if let Some((order_row, dt)) = pin
                    && (o.data() != order_row.as_slice()
                        || !dts[b].is_valid(r)
                        || dts[b].value(r) != dt)
                {
                    skipped = true;
                    continue;
                }
                // The smallest wins; of equal ones, the first.
                if best.as_ref().is_none_or(|(_, bo)| o < *bo) {
                    best = Some(((b, r), o));
                }
            }
            if let Some((at, _)) = best {
                first.insert(key, at);
            }
        }
    }
    if let Some(seen) = seen
        && seen.track
    {
        let mut keys: Vec<(u64, Vec<u8>)> = first
            .keys()
            .map(|key| (seen.fingerprint(key), key.to_vec()))
            .collect();
        keys.sort_unstable();
        seen.keys = keys;
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

/// The [`ORDER`] columns, in row format, of the rows `contested` names: per batch, the
/// row positions (ascending) and their rows.
fn contested_orders(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    order: &RowConverter,
    contested: &HashMap<&[u8], Vec<(usize, usize)>>,
) -> Result<Vec<(Vec<usize>, Rows)>, ArrowError> {
    let mut at: Vec<Vec<usize>> = vec![Vec::new(); batches.len()];
    for rows in contested.values() {
        for &(b, r) in rows {
            at[b].push(r);
        }
    }
    batches
        .iter()
        .zip(at)
        .map(|(batch, mut at)| {
            at.sort_unstable();
            let idx = UInt32Array::from_iter_values(at.iter().map(|r| *r as u32));
            let cols = columns(schema, batch, &ORDER)?
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
            Ok((at, order.convert_columns(&cols)?))
        })
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

/// What one chunk of a scoring run saw: with `track` (a score of several chunks), the
/// fingerprint (of the record type and the key) and the key of every record version it
/// kept, for [`KeyRuns`], which finds the versions delivered on dates in two chunks.
#[derive(Debug, Default)]
pub struct Seen {
    /// Distinguishes record types (the same key in two types is two versions).
    pub salt: u64,
    pub track: bool,
    /// Ascending by fingerprint; keys in row format ([`KEY`]).
    pub keys: Vec<(u64, Vec<u8>)>,
    /// With `index`: the `(fingerprint, day)` pairs of the deliveries seen
    /// ([`crate::index`]), ascending.
    pub index: bool,
    pub pairs: Vec<(u64, i32)>,
}

impl Seen {
    /// The same on every run and machine (a fixed seed). foldhash rather than the
    /// standard library's SipHash: SipHash took 1–1.5% of a 1M full score's CPU here; a
    /// collision only makes scoring look a key up again ([`KeyRuns`]), never a wrong number.
    fn fingerprint(&self, key: &[u8]) -> u64 {
        use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
        let mut h = foldhash::fast::FixedState::with_seed(0x6372_6d64_7121).build_hasher();
        self.salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }
}

/// The record versions each chunk of a scoring run kept, one file per chunk in a
/// temporary folder (ascending `(fingerprint, record type, key)`), so that memory does
/// not grow with the warehouse (held in memory, they took 8 bytes per version: 80 MiB at
/// 10M entries). Once every chunk is scored, one merge over the files finds the
/// fingerprints that two chunks saw: a version delivered on dates in two chunks, or,
/// about once in 2^64/n, two versions with one fingerprint; scoring resolves them
/// exactly ([`resolve_again`]).
pub(crate) struct KeyRuns {
    dir: tempfile::TempDir,
    files: Vec<std::path::PathBuf>,
}

/// One entry of a [`KeyRuns`] file.
type KeyEntry = (u64, u8, Vec<u8>);

impl KeyRuns {
    pub(crate) fn new() -> std::io::Result<KeyRuns> {
        Ok(KeyRuns {
            dir: tempfile::Builder::new().prefix("crmdq-keys-").tempdir()?,
            files: Vec::new(),
        })
    }

    /// Write one chunk's versions (`(fingerprint, record type, key)`, any order).
    pub(crate) fn write(&mut self, mut entries: Vec<KeyEntry>) -> std::io::Result<()> {
        use std::io::Write as _;
        entries.sort_unstable();
        let path = self
            .dir
            .path()
            .join(format!("chunk-{:05}", self.files.len()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for (fp, t, key) in &entries {
            let len = u32::try_from(key.len()).map_err(std::io::Error::other)?;
            out.write_all(&fp.to_le_bytes())?;
            out.write_all(&[*t])?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(key)?;
        }
        out.flush()?;
        self.files.push(path);
        Ok(())
    }

    /// The keys (by record type, `types` of them) whose fingerprint more than one
    /// chunk's file holds, each once.
    pub(crate) fn again(&self, types: usize) -> std::io::Result<Vec<Vec<Vec<u8>>>> {
        use std::cmp::Reverse;
        fn next(r: &mut impl std::io::Read) -> std::io::Result<Option<KeyEntry>> {
            let mut head = [0u8; 13];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let fp = u64::from_le_bytes(head[..8].try_into().map_err(std::io::Error::other)?);
            let len = u32::from_le_bytes(head[9..].try_into().map_err(std::io::Error::other)?);
            let mut key = vec![0; len as usize];
            r.read_exact(&mut key)?;
            Ok(Some((fp, head[8], key)))
        }
        let mut readers = self
            .files
            .iter()
            .map(|f| Ok(std::io::BufReader::new(std::fs::File::open(f)?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut heads: Vec<Option<KeyEntry>> = Vec::with_capacity(readers.len());
        let mut heap = std::collections::BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let h = next(r)?;
            if let Some((fp, _, _)) = &h {
                heap.push(Reverse((*fp, i)));
            }
            heads.push(h);
        }
        let mut again: Vec<Vec<Vec<u8>>> = vec![Vec::new(); types];
        while let Some(Reverse((fp, _))) = heap.peek().copied() {
            // Every entry of this fingerprint, from every file, and the files they are in.
            let mut group: Vec<(usize, u8, Vec<u8>)> = Vec::new();
            while let Some(Reverse((f, i))) = heap.peek().copied()
                && f == fp
            {
                heap.pop();
                while let Some((g, t, key)) = heads[i].take_if(|h| h.0 == fp) {
                    debug_assert_eq!(g, fp);
                    group.push((i, t, key));
                    heads[i] = next(&mut readers[i])?;
                }
                if let Some((g, _, _)) = &heads[i] {
                    heap.push(Reverse((*g, i)));
                }
            }
            if group.iter().any(|(i, _, _)| *i != group[0].0) {
                for (_, t, key) in group {
                    if let Some(a) = again.get_mut(usize::from(t)) {
                        a.push(key);
                    }
                }
            }
        }
        for a in &mut again {
            a.sort_unstable();
            a.dedup();
        }
        Ok(again)
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

    /// The merge finds exactly the fingerprints that two chunks' files hold (with every
    /// key behind them, each once), not those one file holds twice, and reads files of
    /// every length, empty included.
    #[test]
    fn key_runs_find_versions_two_chunks_saw() {
        let mut runs = KeyRuns::new().unwrap();
        let k = |s: &str| s.as_bytes().to_vec();
        // Chunk 0: a, b, and c twice under one fingerprint (a collision within a chunk).
        runs.write(vec![
            (9, 0, k("b")),
            (3, 0, k("a")),
            (20, 1, k("c1")),
            (20, 1, k("c2")),
        ])
        .unwrap();
        runs.write(Vec::new()).unwrap();
        // Chunk 2: a again, d, and e under b's fingerprint in another type (a collision).
        runs.write(vec![(3, 0, k("a")), (5, 1, k("d")), (9, 1, k("e"))])
            .unwrap();
        // Chunk 3: c1 again, and a third time a.
        runs.write(vec![
            (20, 1, k("c1")),
            (3, 0, k("a")),
            (u64::MAX, 1, k("z")),
        ])
        .unwrap();
        let again = runs.again(2).unwrap();
        assert_eq!(again[0], vec![k("a"), k("b")]);
        assert_eq!(again[1], vec![k("c1"), k("c2"), k("e")]);
        let mut one = KeyRuns::new().unwrap();
        one.write(vec![(1, 0, k("x")), (1, 0, k("y"))]).unwrap();
        assert_eq!(one.again(1).unwrap(), vec![Vec::<Vec<u8>>::new()]);
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
