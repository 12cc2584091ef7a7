//! The incremental score: what a score was computed from ([`ComputedFrom`], recorded in
//! its log entry), and from that and the log since, which business dates and periods
//! the next score must compute again ([`plan`]); the rest of the score tables' files are
//! kept as they are. The result is byte-identical to a full re-score (tested), because:
//!
//! - every score file holds one business date (daily tables) or one period start
//!   (period tables), and is a function of that date's or period group's inputs only;
//! - a date is computed again when its inputs may have changed ([`plan`]): new
//!   deliveries on it; a new delivery of a record that has deliveries on it (a record's
//!   KPIs land on the dates of its versions, and its first delivery per version decides
//!   which delivery is an entry); an order delivered within `orders_within_days` after
//!   it (`won_without_order`); a roster row or absence of any person whose validity
//!   covers it (rows compared person by person, in order);
//! - a date is computed from every delivery of every record that has a delivery on it
//!   (the record index, [`crate::index`], finds the records' other dates), orders from the
//!   window after it too, so each record's state and first deliveries are exact;
//! - a period is computed again when one of its dates is, and the period after it (its
//!   `prev_score`; the score of a period before one computed again that is not computed
//!   again is read from its file), with every other kind of period starting on the same
//!   day (a period file holds them all), from the check-ins behind its medians kept per
//!   date in the state.
//!
//! Anything else — another crmdq version, a scoring change in the pipeline (its SQL, the
//! calendar, the stages, the scorecards, the review settings, the compression), a log
//! entry that removes data, state that cannot be read, a record date that is not a
//! date, or more than half the warehouse to read anyway — gives a full re-score.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use crmdq_config::Pipeline;
use crmdq_schema::{RecordType, ScoreTable, record_table_schema};
use crmdq_warehouse::{FileAdd, LogKind, Snapshot, Warehouse, register_table};
use jiff::ToSpan as _;
use jiff::civil::Date;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::index::{self, STATE_DIR};
use crate::{ScoreError, period, q};

/// The state's format; another one is a full re-score.
const FORMAT: u32 = 1;

/// What a score was computed from (its log entry's `computed_from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedFrom {
    pub format: u32,
    /// The crmdq version that computed it.
    pub crmdq: String,
    /// The commit-log version scored: every entry up to it.
    pub log_version: u64,
    /// Each record table's version scored (the last log version that changed it).
    pub tables: BTreeMap<String, u64>,
    /// Digests of what in the pipeline the daily and the period tables depend on.
    pub daily_plan: String,
    pub period_plan: String,
    /// Digests of the roster and the absences used, and their rows (state files).
    pub roster: String,
    pub absences: String,
    pub roster_file: String,
    pub absences_file: String,
    /// The counted check-ins of every date (`person_id, dt, minutes`): the period
    /// medians' input.
    pub facts_file: String,
    /// The record index's runs ([`crate::index`]).
    pub index: Vec<String>,
    /// The business dates this score computed (every one for a full score).
    pub computed_dates: usize,
    /// Whether it was a full score.
    pub full: bool,
}

/// Digests of the pipeline's scoring, as [`ComputedFrom`] keeps them.
#[derive(Debug, Clone)]
pub(crate) struct Plans {
    pub daily: String,
    pub period: String,
}

impl Plans {
    pub(crate) fn of(p: &Pipeline, props: &WriterProperties) -> Plans {
        let mut d = Sha256::new();
        d.update(env!("CARGO_PKG_VERSION"));
        for (name, body) in crate::sql::views() {
            d.update(name);
            d.update(body);
        }
        for t in ScoreTable::DAILY {
            d.update(crate::table_sql(t, p));
        }
        let plan = crate::review::plan(p);
        for (n, s) in plan
            .setup
            .iter()
            .chain(&plan.bucket)
            .chain(&plan.finish)
            .chain(&plan.range)
        {
            d.update(n);
            d.update(s);
        }
        let s = &p.scoring;
        d.update(format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{:?}",
            s.scorecards,
            s.opportunity_stages,
            s.orders_within_days,
            p.checks.calendar,
            props.compression(&parquet::schema::types::ColumnPath::from("x")),
            p.time_zone_name,
        ));
        let daily = hex::encode(d.finalize());
        let mut d = Sha256::new();
        d.update(&daily);
        for t in [ScoreTable::PersonPeriod, ScoreTable::TeamPeriod] {
            for (name, sql) in crate::table_steps(t, p) {
                d.update(name);
                d.update(sql);
            }
            d.update(crate::table_sql(t, p));
        }
        d.update(format!("{:?}", s.review));
        Plans {
            daily,
            period: hex::encode(d.finalize()),
        }
    }
}

/// A batch's rows as text (NULL as `None`), with its column names: the roster and the
/// absences as the state keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    pub(crate) fn of(b: &RecordBatch) -> Rows {
        let opts = FormatOptions::default();
        let fmts: Vec<Option<ArrayFormatter>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).ok())
            .collect();
        let rows = (0..b.num_rows())
            .map(|r| {
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| {
                        (c.is_valid(r))
                            .then(|| f.as_ref().map(|f| f.value(r).to_string()))
                            .flatten()
                    })
                    .collect()
            })
            .collect();
        Rows {
            columns: b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            rows,
        }
    }

    fn digest(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).unwrap_or_default()))
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Each person's rows, in order: the inclusive date range each is valid for
    /// (`from`/`to` columns as named; a missing bound is open) and the rest of the row.
    fn by_person(&self, from: &str, to: &str) -> BTreeMap<String, Vec<(RowRange, String)>> {
        let (pid, f, t) = (self.col("person_id"), self.col(from), self.col(to));
        let mut out: BTreeMap<String, Vec<(RowRange, String)>> = BTreeMap::new();
        for r in &self.rows {
            let get = |i: Option<usize>| i.and_then(|i| r.get(i).cloned().flatten());
            let bound = |i| get(i).and_then(|s| s.parse::<Date>().ok());
            let person = get(pid).unwrap_or_default();
            let rest: Vec<&Option<String>> = r
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != f && Some(*i) != t)
                .map(|(_, v)| v)
                .collect();
            let text = serde_json::to_string(&rest).unwrap_or_default();
            out.entry(person)
                .or_default()
                .push(((bound(f), bound(t)), text));
        }
        out
    }
}

type RowRange = (Option<Date>, Option<Date>);

/// How a person's rows on a date are read.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The roster: the row in force (the latest `valid_from`, then the first listed).
    InForce,
    /// Absences: every row covering the date.
    All,
}

/// What `rows` (one person's) say about date `d`.
fn on_date(rows: Option<&Vec<(RowRange, String)>>, d: Date, pick: Pick) -> Vec<&str> {
    let covering = rows
        .into_iter()
        .flatten()
        .filter(|(r, _)| r.0.is_none_or(|f| f <= d) && r.1.is_none_or(|t| d <= t));
    match pick {
        Pick::InForce => {
            let mut best: Option<&(RowRange, String)> = None;
            for row in covering {
                // A later `valid_from` wins (none is the earliest); on a tie the first.
                if best.is_none_or(|b| row.0.0 > b.0.0) {
                    best = Some(row);
                }
            }
            best.map(|(_, t)| t.as_str()).into_iter().collect()
        }
        Pick::All => {
            let mut v: Vec<&str> = covering.map(|(_, t)| t.as_str()).collect();
            v.sort_unstable();
            v
        }
    }
}

/// The days of `dates` on which some person's rows read differently in `old` and `new`.
fn changed_days(
    old: &Rows,
    new: &Rows,
    (from, to): (&str, &str),
    pick: Pick,
    dates: &BTreeMap<i32, String>,
) -> BTreeSet<i32> {
    if old.columns != new.columns {
        return dates.keys().copied().collect();
    }
    let (a, b) = (old.by_person(from, to), new.by_person(from, to));
    let people: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = BTreeSet::new();
    for person in people {
        let (x, y) = (a.get(person), b.get(person));
        if x == y {
            continue;
        }
        for (day, dt) in dates {
            if let Ok(d) = dt.parse::<Date>()
                && on_date(x, d, pick) != on_date(y, d, pick)
            {
                out.insert(*day);
            }
        }
    }
    out
}

/// What an incremental score computes, and what it keeps.
pub(crate) struct Incremental {
    pub prev: ComputedFrom,
    /// The business dates computed again.
    pub dates: BTreeSet<String>,
    /// The record files read: every delivery of every record on those dates.
    pub scope: Snapshot,
    /// Of those files, the deliveries read ([`register_records`]).
    pub filter: Filter,
    /// The first days of the periods computed again (every kind of period starting on
    /// such a day is: a period file holds the periods starting on its day).
    pub starts: BTreeSet<Date>,
}

/// Why a score is full rather than incremental (the shape [`plan`] returns).
#[allow(clippy::unnecessary_wraps)]
fn full(why: impl std::fmt::Display) -> Result<Result<Incremental, String>, ScoreError> {
    let why = why.to_string();
    tracing::info!("full score: {why}");
    Ok(Err(why))
}

/// The incremental plan from the last score to `snap`, or why the score is full.
pub(crate) async fn plan(
    p: &Pipeline,
    w: &Warehouse,
    snap: &Snapshot,
    roster: &Rows,
    absences: &Rows,
    plans: &Plans,
    full_above: f64,
) -> Result<Result<Incremental, String>, ScoreError> {
    let Some((_, Some(cf))) = &snap.last_score else {
        return full("no earlier score recorded what it was computed from");
    };
    let prev: ComputedFrom = match serde_json::from_value(cf.clone()) {
        Ok(c) => c,
        Err(e) => return full(format!("the last score's record is unreadable: {e}")),
    };
    if prev.format != FORMAT || prev.crmdq != env!("CARGO_PKG_VERSION") {
        return full("the last score was computed by another crmdq version");
    }
    if prev.daily_plan != plans.daily || prev.period_plan != plans.period {
        return full("the pipeline's scoring changed since the last score");
    }
    // What was committed since.
    let record_tables: BTreeSet<&str> = RecordType::ALL.iter().map(|r| r.as_str()).collect();
    let mut new_files: Vec<FileAdd> = Vec::new();
    for v in prev.log_version + 1..=snap.version {
        let e = w.entry(v).await?;
        match e.kind {
            LogKind::Ingest if e.removes.is_empty() => new_files.extend(
                e.files
                    .into_iter()
                    .filter(|f| record_tables.contains(f.table.as_str())),
            ),
            // Compaction moves rows between files (no data change); alert events and
            // scores are not inputs.
            LogKind::Optimize if e.files.iter().all(|f| f.rewrite) => {}
            LogKind::Alerts | LogKind::Score => {}
            _ => return full(format!("log entry {v} removes or rewrites data")),
        }
    }
    let all_dates: BTreeMap<i32, String> = snap_dates(snap);
    if all_dates.contains_key(&i32::MIN) {
        return full("a record table has a business date that is not a date");
    }
    let mut a: BTreeSet<i32> = BTreeSet::new();
    for f in &new_files {
        match index::day_of(&f.dt) {
            Some(d) => a.insert(d),
            None => return full(format!("business date {:?} is not a date", f.dt)),
        };
    }
    // Roster and absence changes: every date their changed rows cover.
    let prev_roster = read_rows(w, &prev.roster_file).await;
    let prev_absences = read_rows(w, &prev.absences_file).await;
    let (Some(prev_roster), Some(prev_absences)) = (prev_roster, prev_absences) else {
        return full("the last score's roster or absences copy is unreadable");
    };
    a.extend(changed_days(
        &prev_roster,
        roster,
        ("valid_from", "valid_to"),
        Pick::InForce,
        &all_dates,
    ));
    a.extend(changed_days(
        &prev_absences,
        absences,
        ("from", "to"),
        Pick::All,
        &all_dates,
    ));
    // The other dates of the records delivered anew, and the wins an order may answer.
    let window = i32::try_from(p.scoring.orders_within_days).unwrap_or(i32::MAX);
    let order = type_idx(RecordType::Order);
    let started = std::time::Instant::now();
    let new_ids = record_ids(w, &new_files).await?;
    let runs = match index::Runs::load(w, &prev.index).await {
        Ok(r) => r,
        Err(e) => return full(e),
    };
    let known = match lookup(&runs, &new_ids) {
        Ok(k) => k,
        Err(e) => return full(e),
    };
    for (t, d) in &known {
        a.insert(*d);
        if *t == order {
            a.extend(
                all_dates
                    .range(d.saturating_sub(window)..=*d)
                    .map(|(k, _)| *k),
            );
        }
    }
    for f in new_files
        .iter()
        .filter(|f| f.table == RecordType::Order.as_str())
    {
        if let Some(d) = index::day_of(&f.dt) {
            a.extend(
                all_dates
                    .range(d.saturating_sub(window)..=d)
                    .map(|(k, _)| *k),
            );
        }
    }
    a.retain(|d| all_dates.contains_key(d));
    // What to read: each type's files of those dates (orders also of the window after
    // each), then every other date of the records found there.
    let mut full_days: BTreeMap<u8, BTreeSet<i32>> = BTreeMap::new();
    for rt in RecordType::ALL {
        let mut days = a.clone();
        if rt == RecordType::Order {
            for d in &a {
                days.extend(
                    all_dates
                        .range(*d..=d.saturating_add(window))
                        .map(|(k, _)| *k),
                );
            }
        }
        full_days.insert(type_idx(rt), days);
    }
    let first: Vec<FileAdd> = RecordType::ALL
        .iter()
        .flat_map(|rt| {
            let days = &full_days[&type_idx(*rt)];
            snap.files_of(rt.as_str())
                .iter()
                .filter(|f| index::day_of(&f.dt).is_some_and(|d| days.contains(&d)))
                .cloned()
        })
        .collect();
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "incremental: records delivered anew looked up"
    );
    let ids = record_ids(w, &first).await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        records = ids.len(),
        "incremental: records of the dates read"
    );
    let whole_days = full_days.clone();
    let others = match lookup(&runs, &ids) {
        Ok(k) => k,
        Err(e) => return full(e),
    };
    for (t, d) in others {
        if let Some(set) = full_days.get_mut(&t) {
            set.insert(d);
        }
    }
    let mut scope = Snapshot {
        version: snap.version,
        ..Snapshot::default()
    };
    let (mut read, mut total) = (0u64, 0u64);
    for rt in RecordType::ALL {
        let days = &full_days[&type_idx(rt)];
        let files: Vec<FileAdd> = snap
            .files_of(rt.as_str())
            .iter()
            .filter(|f| index::day_of(&f.dt).is_some_and(|d| days.contains(&d)))
            .cloned()
            .collect();
        read += files.iter().map(|f| f.rows).sum::<u64>();
        total += snap.rows_of(rt.as_str());
        scope.tables.insert(rt.as_str().to_string(), files);
    }
    if read as f64 > full_above * total as f64 {
        return full(format!(
            "{read} of {total} deliveries to read: a full score is as cheap"
        ));
    }
    // The periods of those dates, and the period after each (its `prev_score`).
    let mut starts = BTreeSet::new();
    for d in &a {
        let Ok(date) = all_dates[d].parse::<Date>() else {
            continue;
        };
        for per in period::periods_of(date) {
            starts.insert(per.start);
            if let Some(next) = per.end.checked_add(1.day()).ok().and_then(|n| {
                period::periods_of(n)
                    .into_iter()
                    .find(|x| x.kind == per.kind)
            }) {
                starts.insert(next.start);
            }
        }
    }
    let dates: BTreeSet<String> = a.iter().map(|d| all_dates[d].clone()).collect();
    tracing::info!(
        dates = dates.len(),
        deliveries_read = read,
        periods = starts.len(),
        "incremental score"
    );
    let filter = Filter {
        whole: whole_days
            .iter()
            .map(|(t, days)| (*t, days.iter().map(|d| all_dates[d].clone()).collect()))
            .collect(),
        ids: Arc::new(ids.iter().map(|(_, f)| *f).collect()),
    };
    Ok(Ok(Incremental {
        prev,
        dates,
        scope,
        filter,
        starts,
    }))
}

/// The deliveries an incremental score reads of its scope's files: on the dates it reads
/// whole (`whole`, by record type), every one; on the others (the other dates of the
/// records it needs), those of the records in `ids` (fingerprints, [`index::fingerprint`]).
/// The rest of those files would only change numbers of dates that are not computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub whole: BTreeMap<u8, BTreeSet<String>>,
    pub ids: Arc<std::collections::HashSet<u64>>,
}

/// Register the record table `rt` of `files` as `rt`, read through `filter` (an
/// incremental score) when some of the files are not of a date it reads whole.
pub(crate) async fn register_records(
    ctx: &datafusion::prelude::SessionContext,
    w: &Warehouse,
    rt: RecordType,
    files: &[FileAdd],
    filter: Option<&Filter>,
) -> Result<(), ScoreError> {
    let t = type_idx(rt);
    let whole = filter.and_then(|f| Some((f, f.whole.get(&t)?)));
    let Some((f, whole)) = whole.filter(|(_, wh)| files.iter().any(|x| !wh.contains(&x.dt))) else {
        return register_table(ctx, w, rt.as_str(), record_table_schema(rt), files)
            .map_err(q(rt.as_str()));
    };
    let base = format!("crmdq_files_{rt}");
    register_table(ctx, w, &base, record_table_schema(rt), files).map_err(q(rt.as_str()))?;
    ctx.register_udf(in_scope_udf(f.ids.clone()));
    let dates: Vec<String> = whole
        .iter()
        .map(|d| format!("'{}'", d.replace('\'', "''")))
        .collect();
    let cond = if dates.is_empty() {
        "FALSE".to_string()
    } else {
        format!("dt IN ({})", dates.join(", "))
    };
    ctx.sql(&format!(
        "CREATE VIEW \"{rt}\" AS SELECT * FROM {base} WHERE {cond} OR crmdq_in_scope({t}, record_id)"
    ))
    .await
    .map_err(q(rt.as_str()))?;
    Ok(())
}

/// `crmdq_in_scope(type, record_id)`: whether the record's fingerprint is one of a set.
#[derive(Debug)]
struct InScope {
    ids: Arc<std::collections::HashSet<u64>>,
    signature: datafusion::logical_expr::Signature,
}

impl PartialEq for InScope {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }
}
impl Eq for InScope {}
impl std::hash::Hash for InScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.ids) as usize).hash(state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for InScope {
    fn name(&self) -> &'static str {
        "crmdq_in_scope"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::ColumnarValue;
        let t = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(t))) => {
                u8::try_from(*t).unwrap_or(u8::MAX)
            }
            other => {
                return datafusion::common::exec_err!(
                    "crmdq_in_scope: the record type must be an integer, got {other:?}"
                );
            }
        };
        let ids = args.args[1].clone().into_array(args.number_rows)?;
        let ids = arrow::compute::cast(&ids, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let out: arrow::array::BooleanArray = (0..ids.len())
            .map(|i| {
                let id = if ids.is_valid(i) { ids.value(i) } else { "" };
                Some(self.ids.contains(&index::fingerprint(t, id)))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

fn in_scope_udf(ids: Arc<std::collections::HashSet<u64>>) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::new_from_impl(InScope {
        ids,
        signature: datafusion::logical_expr::Signature::any(
            2,
            datafusion::logical_expr::Volatility::Immutable,
        ),
    })
}

pub(crate) fn type_idx(rt: RecordType) -> u8 {
    RecordType::ALL
        .iter()
        .position(|r| *r == rt)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// Every business date of the record tables, by day number.
fn snap_dates(snap: &Snapshot) -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    for rt in RecordType::ALL {
        for f in snap.files_of(rt.as_str()) {
            out.insert(index::day_of(&f.dt).unwrap_or(i32::MIN), f.dt.clone());
        }
    }
    out
}

/// The records (type, fingerprint) with deliveries in `files`.
/// Ascending, each once.
async fn record_ids(w: &Warehouse, files: &[FileAdd]) -> Result<Vec<(u8, u64)>, ScoreError> {
    let ctx = crmdq_catalog::session();
    let mut out = Vec::new();
    for rt in RecordType::ALL {
        let mine: Vec<FileAdd> = files
            .iter()
            .filter(|f| f.table == rt.as_str())
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        register_table(&ctx, w, rt.as_str(), record_table_schema(rt), &mine)
            .map_err(q(rt.as_str()))?;
        let batches = ctx
            .sql(&format!("SELECT DISTINCT record_id FROM \"{rt}\""))
            .await
            .map_err(q(rt.as_str()))?
            .collect()
            .await
            .map_err(q(rt.as_str()))?;
        let t = type_idx(rt);
        for b in batches {
            let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)
                .map_err(|e| q(rt.as_str())(e.into()))?;
            let ids = ids.as_string::<i32>();
            for r in 0..ids.len() {
                let id = if ids.is_valid(r) { ids.value(r) } else { "" };
                out.push((t, index::fingerprint(t, id)));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The `(record type, day)` of every delivery the index holds of the records `ids`, each
/// once (which record it was does not matter to the caller: only which days of which
/// type to read). Sorted vectors and one merge: a day's records are a few hundred
/// thousand.
fn lookup(runs: &index::Runs, ids: &[(u8, u64)]) -> Result<BTreeSet<(u8, i32)>, String> {
    let mut by_fp: Vec<(u64, u8)> = ids.iter().map(|(t, f)| (*f, *t)).collect();
    by_fp.sort_unstable();
    let mut fps: Vec<u64> = by_fp.iter().map(|(f, _)| *f).collect();
    fps.dedup();
    let mut pairs: Vec<(u8, i32)> = Vec::new();
    let mut i = 0;
    for (fp, day) in runs.lookup(&fps) {
        if day == i32::MIN {
            return Err("the record index has a delivery whose business date is not a date".into());
        }
        while i < by_fp.len() && by_fp[i].0 < fp {
            i += 1;
        }
        pairs.extend(
            by_fp[i..]
                .iter()
                .take_while(|(f, _)| *f == fp)
                .map(|(_, t)| (*t, day)),
        );
    }
    pairs.sort_unstable();
    pairs.dedup();
    Ok(pairs.into_iter().collect())
}

async fn read_rows(w: &Warehouse, path: &str) -> Option<Rows> {
    let bytes = w.get_bytes(path).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write `rows` as a state file; returns its path and digest.
pub(crate) async fn write_rows(
    w: &Warehouse,
    kind: &str,
    rows: &Rows,
) -> Result<(String, String), ScoreError> {
    let bytes = serde_json::to_vec(rows).unwrap_or_default();
    let digest = rows.digest();
    let path = format!("{STATE_DIR}/{kind}-{}.json", &digest[..24]);
    w.put_durable(&path, bytes.into()).await?;
    Ok((path, digest))
}

/// Write the counted check-ins (`batches`, sorted here) as a state file; its path.
pub(crate) async fn write_facts(
    w: &Warehouse,
    batches: Vec<RecordBatch>,
    schema: arrow::datatypes::SchemaRef,
    props: &WriterProperties,
) -> Result<String, ScoreError> {
    let all = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| q("checkin_facts")(e.into()))?;
    let sort: Vec<arrow::compute::SortColumn> = ["dt", "person_id", "minutes"]
        .iter()
        .filter_map(|c| all.column_by_name(c))
        .map(|c| arrow::compute::SortColumn {
            values: c.clone(),
            options: None,
        })
        .collect();
    let all = if sort.is_empty() || all.num_rows() == 0 {
        all
    } else {
        let idx = arrow::compute::lexsort_to_indices(&sort, None)
            .map_err(|e| q("checkin_facts")(e.into()))?;
        arrow::compute::take_record_batch(&all, &idx).map_err(|e| q("checkin_facts")(e.into()))?
    };
    let bytes =
        crate::files::encode_file(&all, &schema, props).map_err(|source| ScoreError::Encode {
            table: "checkin_facts".into(),
            source,
        })?;
    let path = format!(
        "{STATE_DIR}/facts-{}.parquet",
        hex::encode(&Sha256::digest(&bytes)[..12])
    );
    w.put_durable(&path, bytes.into()).await?;
    Ok(path)
}

/// The counted check-ins of the last score, but those of `except` dates.
pub(crate) async fn read_facts(
    w: &Warehouse,
    path: &str,
    except: &BTreeSet<String>,
) -> Result<Vec<RecordBatch>, ScoreError> {
    let bytes = w.get_bytes(path).await?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::build)
        .map_err(|source| ScoreError::Encode {
            table: "checkin_facts".into(),
            source,
        })?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| q("checkin_facts")(e.into()))?;
        let Some(dt) = b.column_by_name("dt") else {
            continue;
        };
        let dt =
            arrow::compute::cast(dt, &DataType::Utf8).map_err(|e| q("checkin_facts")(e.into()))?;
        let dt = dt.as_string::<i32>();
        let keep: arrow::array::BooleanArray = (0..dt.len())
            .map(|r| Some(!(dt.is_valid(r) && except.contains(dt.value(r)))))
            .collect();
        out.push(
            arrow::compute::filter_record_batch(&b, &keep)
                .map_err(|e| q("checkin_facts")(e.into()))?,
        );
    }
    Ok(out)
}

/// What the next score needs to know about this one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn computed_from(
    snap: &Snapshot,
    plans: &Plans,
    roster: (String, String),
    absences: (String, String),
    facts_file: String,
    index: Vec<String>,
    computed_dates: usize,
    full: bool,
) -> ComputedFrom {
    ComputedFrom {
        format: FORMAT,
        crmdq: env!("CARGO_PKG_VERSION").to_string(),
        log_version: snap.version,
        tables: RecordType::ALL
            .iter()
            .filter_map(|rt| Some((rt.as_str().to_string(), *snap.changed_at.get(rt.as_str())?)))
            .collect(),
        daily_plan: plans.daily.clone(),
        period_plan: plans.period.clone(),
        roster: roster.1,
        absences: absences.1,
        roster_file: roster.0,
        absences_file: absences.0,
        facts_file,
        index,
        computed_dates,
        full,
    }
}

/// The check-in facts as a table, for the period pass.
pub(crate) fn facts_table(
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>, ScoreError> {
    Ok(Arc::new(
        datafusion::datasource::MemTable::try_new(schema, vec![batches])
            .map_err(q("checkin_facts"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(r: &[[&str; 3]]) -> Rows {
        Rows {
            columns: vec!["person_id".into(), "valid_from".into(), "valid_to".into()],
            rows: r
                .iter()
                .map(|x| {
                    x.iter()
                        .map(|s| (!s.is_empty()).then(|| (*s).to_string()))
                        .collect()
                })
                .collect(),
        }
    }

    /// The index lookup gives each (record type, day) the records' deliveries are on,
    /// once, over runs; records of two types with one fingerprint give both types; a
    /// delivery whose date is not a date is refused.
    #[test]
    fn lookup_gives_the_types_and_days_of_the_records() {
        let runs = index::Runs::of(&[&[(1, 10), (2, 11), (5, 12)], &[(1, 10), (1, 13), (9, 14)]]);
        let found = lookup(&runs, &[(0, 1), (3, 1), (4, 5), (4, 6), (2, 9)]).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [(0, 10), (0, 13), (2, 14), (3, 10), (3, 13), (4, 12)]
        );
        assert!(lookup(&runs, &[]).unwrap().is_empty());
        let bad = index::Runs::of(&[&[(1, i32::MIN)]]);
        assert!(lookup(&bad, &[(0, 1)]).is_err());
    }

    /// Only the days on which a changed person's row in force (or absences) differ; a
    /// reorder of one person's rows counts only where the first listed wins a tie; other
    /// people's order does not count.
    #[test]
    fn roster_changes_cover_the_days_they_change() {
        let dates: BTreeMap<i32, String> = (1..=9)
            .map(|d| {
                let dt = format!("2026-04-0{d}");
                (index::day_of(&dt).unwrap(), dt)
            })
            .collect();
        let days =
            |v: BTreeSet<i32>| -> Vec<String> { v.iter().map(|d| dates[d].clone()).collect() };
        let cols = ("valid_from", "valid_to");
        let old = rows(&[["a", "", ""], ["b", "", ""]]);
        // a moves from the 5th: the old row until the 4th, a new row from the 5th.
        let mut new = rows(&[
            ["b", "", ""],
            ["a", "", "2026-04-04"],
            ["a", "2026-04-05", ""],
        ]);
        new.rows[2].push(Some("north".into()));
        new.rows[0].push(None);
        new.rows[1].push(None);
        let mut old2 = old.clone();
        for r in &mut old2.rows {
            r.push(None);
        }
        old2.columns.push("team_id".into());
        new.columns.push("team_id".into());
        assert_eq!(
            days(changed_days(&old2, &new, cols, Pick::InForce, &dates)),
            [
                "2026-04-05",
                "2026-04-06",
                "2026-04-07",
                "2026-04-08",
                "2026-04-09"
            ]
        );
        assert!(changed_days(&old2, &old2, cols, Pick::InForce, &dates).is_empty());
        // Another person's rows moved: nothing.
        let moved = rows(&[["b", "", ""], ["a", "", ""]]);
        assert!(changed_days(&old, &moved, cols, Pick::InForce, &dates).is_empty());
        // An absence added on the 2nd to the 3rd.
        let abs = ("from", "to");
        let none = rows(&[]);
        let one = rows(&[["a", "2026-04-02", "2026-04-03"]]);
        let mut none = none;
        none.columns = vec!["person_id".into(), "from".into(), "to".into()];
        let mut one = one;
        one.columns = none.columns.clone();
        assert_eq!(
            days(changed_days(&none, &one, abs, Pick::All, &dates)),
            ["2026-04-02", "2026-04-03"]
        );
    }
}
