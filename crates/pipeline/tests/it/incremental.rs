//! The incremental score: after new deliveries (new days, late entries for earlier days,
//! new versions of old records, re-sent deliveries, deliveries that come first by a
//! clock set back), a roster change, an absence change or nothing at all, `crmdq score`
//! computes only the dates and periods that changed, and its score files are
//! byte-identical to a full re-score of the same warehouse state (replayed into another
//! folder, so that the chain of incremental scores goes on). A scoring change in the
//! pipeline is a full score.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmdq_config::Pipeline;
use crmdq_pipeline::{FixedClock, ingest};
use crmdq_score::incremental::ComputedFrom;
use crmdq_score::{ScoreOptions, ScoreSummary, score_with};
use crmdq_testkit::generate::{GenSpec, absences_csv, generate, roster_csv, shifted};
use crmdq_warehouse::Warehouse;

fn event_time(line: &str) -> Option<jiff::Timestamp> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["event_time"].as_str()?.parse().ok()
}

struct Setup {
    dir: tempfile::TempDir,
    p: Pipeline,
    w: Warehouse,
    roster: PathBuf,
    n: usize,
}

impl Setup {
    async fn ingest(&mut self, lines: &[String], at: &str) {
        self.n += 1;
        let path = self.dir.path().join(format!("part-{}.ndjson", self.n));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let clock = Arc::new(FixedClock(at.parse().unwrap()));
        ingest::ingest(&self.p, &self.w, &[path], clock, &mut |_, _, _| {})
            .await
            .unwrap();
    }

    async fn score(&self, opts: ScoreOptions) -> ScoreSummary {
        score_with(
            &self.p,
            &self.w,
            Some(&self.roster),
            "2026-11-01T00:00:00Z".into(),
            &opts,
        )
        .await
        .unwrap()
    }

    /// The default score (incremental when it can be), checked against a full score of
    /// the same warehouse state replayed into another folder; returns it.
    async fn score_checked(&mut self, what: &str) -> ScoreSummary {
        let before = self.w.snapshot().await.unwrap();
        // However much it reads (a small warehouse's records span most of its dates).
        let s = self
            .score(ScoreOptions {
                full_above: f64::INFINITY,
                ..ScoreOptions::default()
            })
            .await;
        self.n += 1;
        let replay = Warehouse::open(&self.dir.path().join(format!("replay-{}", self.n))).unwrap();
        let full = self
            .score(ScoreOptions {
                as_of: Some(before.clone()),
                out: Some(replay),
                full: true,
                ..ScoreOptions::default()
            })
            .await;
        assert!(!full.incremental);
        eprintln!(
            "{what}: computed {} of {} dates ({:?})",
            s.computed_dates, s.dates, s.full_because
        );
        assert_eq!(files(&s), files(&full), "{what}: incremental ≠ full");
        assert_eq!(s.rows, full.rows, "{what}");
        assert_eq!(s.dates, full.dates, "{what}");
        // What it was computed from is recorded with it.
        let snap = self.w.snapshot().await.unwrap();
        let (v, cf) = snap.last_score.clone().unwrap();
        assert_eq!(v, s.version);
        let cf: ComputedFrom = serde_json::from_value(cf.unwrap()).unwrap();
        assert_eq!(cf.log_version, before.version, "{what}");
        assert_eq!(cf.full, !s.incremental, "{what}");
        assert_eq!(cf.computed_dates, s.computed_dates, "{what}");
        for (t, v) in &cf.tables {
            assert_eq!(before.changed_at.get(t), Some(v), "{what}: {t}");
        }
        s
    }
}

fn files(s: &ScoreSummary) -> Vec<String> {
    let mut v: Vec<String> = s
        .files
        .iter()
        .map(|f| format!("{} {} {} {}", f.table, f.path, f.rows, f.bytes))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_scores_equal_full_scores() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut p = Pipeline::load(&fixtures.join("pipeline.yaml")).unwrap();
    p.warehouse.path = dir.path().join("wh");
    // Across a month's and a quarter's end.
    let spec = GenSpec {
        start: jiff::civil::date(2026, 9, 18),
        days: 26,
        people: 16,
        seed: 11,
        tz: p.time_zone.clone(),
        first_id: 0,
    };
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, roster_csv(&spec)).unwrap();
    let absences = dir.path().join("absences.csv");
    std::fs::write(&absences, absences_csv(&spec)).unwrap();
    p.scoring.absences = Some(absences.clone());
    let w = Warehouse::open(&p.warehouse.path).unwrap();
    let mut s = Setup {
        dir,
        p,
        w,
        roster: roster.clone(),
        n: 0,
    };
    let lines = generate(&spec);
    let cut = |day: i64| -> jiff::Timestamp {
        let d = spec.start + jiff::Span::new().days(day);
        d.to_zoned(spec.tz.clone()).unwrap().timestamp()
    };
    let before = |l: &String, day| event_time(l).is_none_or(|t| t < cut(day));
    let (base, rest): (Vec<String>, Vec<String>) =
        lines.iter().cloned().partition(|l| before(l, 18));
    // Late entries: every 25th of the last three days before the cut, held back.
    #[allow(clippy::type_complexity)]
    let (late, base): (Vec<(usize, String)>, Vec<(usize, String)>) = base
        .into_iter()
        .enumerate()
        .partition(|(i, l)| i % 25 == 0 && !before(l, 15) && l.contains("\"record_id\""));
    let (late, base): (Vec<String>, Vec<String>) = (
        late.into_iter().map(|(_, l)| l).collect(),
        base.into_iter().map(|(_, l)| l).collect(),
    );
    assert!(late.len() > 10, "{}", late.len());
    let (day18, rest): (Vec<String>, Vec<String>) = rest.into_iter().partition(|l| before(l, 21));
    assert!(base.len() > 1000 && day18.len() > 100 && rest.len() > 100);

    // 1. The first score is full, and records what it was computed from.
    s.ingest(&base, "2026-10-30T01:00:00Z").await;
    let first = s.score_checked("first").await;
    assert!(!first.incremental);
    assert_eq!(first.computed_dates, first.dates);

    // 2. Three more days (new versions of deals entered before them among them), a few
    //    late entries for earlier days, and records re-sent with other business dates.
    let mut inc: Vec<String> = day18.clone();
    inc.extend(late);
    let recent: Vec<&String> = base
        .iter()
        .filter(|l| l.contains("\"record_id\"") && !before(l, 14))
        .collect();
    inc.extend(recent.iter().step_by(97).map(|l| shifted(l, -2)));
    inc.extend(recent.iter().skip(7).step_by(131).map(|l| shifted(l, 3)));
    s.ingest(&inc, "2026-10-30T02:00:00Z").await;
    let second = s.score_checked("new days and late entries").await;
    assert!(second.incremental, "{:?}", second.full_because);
    assert!(second.computed_dates > 3 && second.computed_dates < second.dates);

    // 3. The rest, on top of an incremental score's state.
    s.ingest(&rest, "2026-10-30T03:00:00Z").await;
    let third = s.score_checked("the remaining days").await;
    assert!(third.incremental);

    // 4. Nothing changed: nothing computed, every file kept.
    let same = s.score_checked("nothing new").await;
    assert!(same.incremental);
    assert_eq!(same.computed_dates, 0);
    assert_eq!(files(&same), files(&third));

    // 5. Deliveries that come first by a clock set back: they become the entries.
    let first_by_clock: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("\"record_id\""))
        .skip(3)
        .step_by(401)
        .map(|l| shifted(l, 1))
        .collect();
    s.ingest(&first_by_clock, "2026-10-29T00:00:00Z").await;
    let back = s.score_checked("a clock set back").await;
    assert!(back.incremental);

    // 6. A rep moves to another team from the tenth day: the dates from then on only.
    let csv = std::fs::read_to_string(&roster).unwrap();
    let moved_from = spec.start + jiff::Span::new().days(10);
    let moved: String = csv
        .lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("li.wei,") {
                let cols: Vec<&str> = rest.split(',').collect();
                let until = moved_from - jiff::Span::new().days(1);
                format!(
                    "li.wei,{},{},{},{},{},{until},{}\nli.wei,{},{},north,mgr.north,{moved_from},,{}",
                    cols[0], cols[1], cols[2], cols[3], cols[4], cols[6], cols[0], cols[1], cols[6]
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&roster, moved).unwrap();
    let team = s.score_checked("a roster change").await;
    assert!(team.incremental);
    assert!(team.computed_dates > 0 && team.computed_dates < team.dates);

    // 7. An absence added: its days only.
    let abs = std::fs::read_to_string(&absences).unwrap();
    let from = spec.start + jiff::Span::new().days(2);
    std::fs::write(&absences, format!("{abs}wang.fang,{from},{from},sick\n")).unwrap();
    let sick = s.score_checked("an absence").await;
    assert!(sick.incremental);
    assert!(
        sick.computed_dates >= 1 && sick.computed_dates <= 2,
        "{}",
        sick.computed_dates
    );

    // 8. A scoring change in the pipeline: everything again.
    s.p.scoring.orders_within_days += 1;
    let changed = s.score_checked("a scoring change").await;
    assert!(!changed.incremental);
    // And the next one is incremental again.
    let again = s.score_checked("after the change").await;
    assert!(again.incremental);
    assert_eq!(again.computed_dates, 0);

    // 9. `vacuum` deletes the state files only earlier scores named, never the latest's:
    //    the next score is still incremental.
    let v = crmdq_warehouse::maintenance::vacuum(
        &s.w,
        std::time::Duration::ZERO,
        "2030-01-01T00:00:00Z".parse().unwrap(),
        false,
    )
    .await
    .unwrap();
    assert!(
        v.deleted.iter().any(|f| f.starts_with("_crmdq_score/")),
        "{:?}",
        v.deleted
    );
    s.ingest(&first_by_clock[..3], "2026-10-30T05:00:00Z").await;
    let vacuumed = s.score_checked("after vacuum").await;
    assert!(vacuumed.incremental, "{:?}", vacuumed.full_because);
}
