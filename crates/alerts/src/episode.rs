//! Alert state as episodes, and the pure decisions taken on it: which days a rule's
//! baseline learns from, and whether a subject fires, repeats or resolves on a day.
//!
//! An *episode* of a (rule, subject) runs from the day it fired to the day it resolved.
//! The invariant this module keeps: a baseline never learns from days on which its
//! subject was firing. While an episode is open the baseline is the one from before the
//! episode began (frozen), so a collapse that persists keeps firing and resolves only
//! when the value is back within the threshold of that pre-episode baseline; closed
//! episodes are left out of later windows. No warehouse here: the daily cadence and a
//! replay of many dates run the same [`step_dates`], and that is tested alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crmdq_config::AlertCondition;
use jiff::civil::Date;

/// One episode of a (rule, subject).
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Its label in event ids: the business date it began (person and team rules) or
    /// the instant of its first evaluation (pipeline rules).
    pub id: String,
    /// The business date it began.
    pub start: Date,
    /// The business date it resolved: its firing days are `start..end`.
    pub end: Option<Date>,
    /// When it was last notified (firing or repeat): business date and clock (µs).
    pub last_notified: Date,
    pub last_notified_us: i64,
}

/// The episodes of one (rule, subject), oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub episodes: Vec<Episode>,
}

/// What an event did to its episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fire,
    Repeat,
    Resolve,
}

impl Kind {
    /// The `state` column of the event.
    pub fn state(self) -> &'static str {
        match self {
            Kind::Fire | Kind::Repeat => "firing",
            Kind::Resolve => "resolved",
        }
    }
}

impl History {
    /// The episode firing now, if any.
    pub fn open(&self) -> Option<&Episode> {
        self.episodes.last().filter(|e| e.end.is_none())
    }

    /// Whether the subject was firing on `d` (inside an episode's `start..end`).
    pub fn firing_on(&self, d: Date) -> bool {
        self.episodes
            .iter()
            .any(|e| e.start <= d && e.end.is_none_or(|end| d < end))
    }

    /// Apply one event. `episode` labels a new episode (ignored otherwise).
    pub fn apply(&mut self, kind: Kind, dt: Date, at_us: i64, episode: &str) {
        match (kind, self.episodes.last_mut().filter(|e| e.end.is_none())) {
            (Kind::Fire, None) => self.episodes.push(Episode {
                id: episode.to_string(),
                start: dt,
                end: None,
                last_notified: dt,
                last_notified_us: at_us,
            }),
            // A recorded `firing` while one is open is a repeat (older rows have no
            // `repeat` column).
            (Kind::Fire | Kind::Repeat, Some(open)) => {
                open.last_notified = dt;
                open.last_notified_us = at_us;
            }
            (Kind::Resolve, Some(open)) => open.end = Some(dt),
            (Kind::Repeat | Kind::Resolve, None) => {}
        }
    }

    /// Apply a recorded row (`state` is `firing` or `resolved`).
    pub fn apply_recorded(&mut self, state: &str, dt: Date, at_us: i64, episode: &str) {
        let kind = if state == "resolved" {
            Kind::Resolve
        } else {
            Kind::Fire
        };
        self.apply(kind, dt, at_us, episode);
    }
}

/// A drop rule's baseline for one subject and day: the values of the `days` calendar
/// days before the window's end (the day judged, or while an episode is open the day it
/// began), less the days on which the subject was firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// First day of the window.
    pub from: Date,
    /// The day after the window (exclusive).
    pub to: Date,
    /// Frozen at the start of the open episode (`to` is that day).
    pub frozen: bool,
    /// Days of the window with a judged value, firing days left out.
    pub days: usize,
    /// Days of the window left out because the subject was firing on them.
    pub excluded: Vec<Date>,
    pub mean: Option<f64>,
    /// Sample standard deviation (None under two days).
    pub sd: Option<f64>,
    pub median: Option<f64>,
}

/// The baseline of `series` (a subject's judged values by business date) for day `d`.
pub fn baseline(series: &BTreeMap<Date, f64>, h: &History, d: Date, days: u32) -> Baseline {
    let open_start = h.open().map(|e| e.start).filter(|s| *s <= d);
    let to = open_start.unwrap_or(d);
    let from = to - jiff::Span::new().days(i64::from(days));
    let mut values = Vec::new();
    let mut excluded = Vec::new();
    for (dt, v) in series.range(from..to) {
        if h.firing_on(*dt) {
            excluded.push(*dt);
        } else {
            values.push(*v);
        }
    }
    let n = values.len();
    let mean = (n > 0).then(|| values.iter().sum::<f64>() / n as f64);
    let sd = mean
        .filter(|_| n > 1)
        .map(|m| (values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64).sqrt());
    let median = (n > 0).then(|| {
        values.sort_by(f64::total_cmp);
        if n % 2 == 1 {
            values[n / 2]
        } else {
            f64::midpoint(values[n / 2 - 1], values[n / 2])
        }
    });
    Baseline {
        from,
        to,
        frozen: open_start.is_some(),
        days: n,
        excluded,
        mean,
        sd,
        median,
    }
}

impl Baseline {
    /// The window in words, for messages: "2026-09-26–2026-10-09, 9 scored days; left
    /// out while firing: 2026-10-01, 2026-10-02".
    pub fn describe(&self) -> String {
        let last = self.to - jiff::Span::new().days(1);
        let mut s = format!("baseline {}–{last}, {} scored day(s)", self.from, self.days);
        if self.frozen {
            let _ = write!(s, ", as before this episode began on {}", self.to);
        }
        if self.excluded.is_empty() {
            s.push_str("; no day left out");
        } else {
            let days: Vec<String> = self.excluded.iter().map(ToString::to_string).collect();
            let _ = write!(s, "; left out while firing: {}", days.join(", "));
        }
        s
    }
}

/// The verdict of a rule on a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub firing: bool,
    /// The value the rule compares against (for a drop: mean − allowance, or median − x).
    pub threshold: Option<f64>,
    /// The subject's own baseline (drop rules).
    pub baseline: Option<f64>,
    /// How the threshold came about, in words.
    pub basis: String,
}

impl Verdict {
    fn quiet(basis: String) -> Verdict {
        Verdict {
            firing: false,
            threshold: None,
            baseline: None,
            basis,
        }
    }
}

/// Judge `value` under `condition` (`baseline` for drop conditions).
pub fn judge(condition: &AlertCondition, value: Option<f64>, b: Option<&Baseline>) -> Verdict {
    let Some(v) = value else {
        return Verdict::quiet("no value".into());
    };
    match condition {
        AlertCondition::Below(t) => Verdict {
            firing: v < *t,
            threshold: Some(*t),
            baseline: None,
            basis: format!("fires below {t}"),
        },
        AlertCondition::Above(t) => Verdict {
            firing: v > *t,
            threshold: Some(*t),
            baseline: None,
            basis: format!("fires above {t}"),
        },
        AlertCondition::Drop {
            stddevs,
            below_median,
            min_history,
            min_drop,
            ..
        } => {
            let Some(b) = b else {
                return Verdict::quiet("no baseline".into());
            };
            if b.days < *min_history as usize {
                return Verdict::quiet(format!(
                    "{} of {min_history} days of history needed ({})",
                    b.days,
                    b.describe()
                ));
            }
            if let (Some(k), Some(mean)) = (stddevs, b.mean) {
                let sd = b.sd.unwrap_or(0.0);
                let t = mean - (k * sd).max(*min_drop);
                Verdict {
                    firing: v < t,
                    threshold: Some(t),
                    baseline: Some(mean),
                    basis: format!(
                        "{}: mean {mean:.3}, sd {sd:.3}; fires below mean − max({k}·sd, {min_drop}) = {t:.3}",
                        b.describe()
                    ),
                }
            } else if let (Some(x), Some(med)) = (below_median, b.median) {
                let t = med - x;
                Verdict {
                    firing: v < t,
                    threshold: Some(t),
                    baseline: Some(med),
                    basis: format!(
                        "{}: median {med:.3}; fires below median − {x} = {t:.3}",
                        b.describe()
                    ),
                }
            } else {
                Verdict::quiet("no baseline".into())
            }
        }
    }
}

/// How often a firing alert is notified again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatEvery {
    /// Person and team rules: business days since the last notification (so a replay
    /// repeats exactly as the daily job did, whatever the clock said).
    Days(i64),
    /// Pipeline rules: clock time (µs).
    Micros(i64),
}

impl RepeatEvery {
    /// Person and team rules count whole business days: 24 h is every day, 72 h every
    /// third day; a part day rounds up; at least one day.
    pub fn days_of(interval: std::time::Duration) -> RepeatEvery {
        RepeatEvery::Days((interval.as_secs().div_ceil(86_400) as i64).max(1))
    }
}

/// What judging a subject on a day does to its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Event(Kind),
    /// Firing, notified within the repeat interval.
    StillFiring,
    Quiet,
}

/// The step for a verdict on `d` (clock `now_us`), given the subject's history.
pub fn step(
    h: &History,
    v: &Verdict,
    has_value: bool,
    d: Date,
    now_us: i64,
    every: RepeatEvery,
) -> Step {
    match (v.firing, h.open()) {
        (true, None) => Step::Event(Kind::Fire),
        (true, Some(open)) => {
            let due = match every {
                RepeatEvery::Days(n) => i64::from((d - open.last_notified).get_days()) >= n,
                RepeatEvery::Micros(us) => now_us - open.last_notified_us >= us,
            };
            if due {
                Step::Event(Kind::Repeat)
            } else {
                Step::StillFiring
            }
        }
        (false, Some(_)) if has_value => Step::Event(Kind::Resolve),
        (false, _) => Step::Quiet,
    }
}

/// The stable id of an event, for receivers to de-duplicate at-least-once deliveries:
/// `rule/subject/episode/kind`, kind `firing`, `repeat-<date or instant>` or `resolved`.
pub fn event_id(rule: &str, subject: &str, episode: &str, kind: Kind, when: &str) -> String {
    let kind = match kind {
        Kind::Fire => "firing".to_string(),
        Kind::Repeat => format!("repeat-{when}"),
        Kind::Resolve => "resolved".to_string(),
    };
    format!("{rule}/{subject}/{episode}/{kind}")
}

/// One subject's judged values for a rule, by business date (days under the rule's
/// entry minimum and days without a value are absent).
pub type Series = BTreeMap<Date, f64>;

/// One transition found by [`step_dates`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub dt: Date,
    pub subject: String,
    pub kind: Kind,
    pub episode: String,
    pub value: f64,
    pub verdict: Verdict,
}

/// Judge every subject of `series` on each of `dates` (ascending), moving `state`
/// forward: the person and team rules' whole decision, for one rule. `days` is the drop
/// window (ignored for other conditions). Returns the transitions in date order, and the
/// subjects still firing (notified earlier) on the last date.
pub fn step_dates(
    condition: &AlertCondition,
    series: &BTreeMap<String, Series>,
    state: &mut BTreeMap<String, History>,
    dates: &[Date],
    every: RepeatEvery,
) -> (Vec<Transition>, Vec<String>) {
    let days = match condition {
        AlertCondition::Drop { days, .. } => Some(*days),
        _ => None,
    };
    let mut out = Vec::new();
    let mut still = Vec::new();
    for (i, d) in dates.iter().enumerate() {
        for (subject, s) in series {
            let Some(value) = s.get(d).copied() else {
                continue;
            };
            let h = state.entry(subject.clone()).or_default();
            let b = days.map(|n| baseline(s, h, *d, n));
            let v = judge(condition, Some(value), b.as_ref());
            match step(h, &v, true, *d, 0, every) {
                Step::Event(kind) => {
                    let episode = h.open().map_or_else(|| d.to_string(), |e| e.id.clone());
                    h.apply(kind, *d, 0, &episode);
                    out.push(Transition {
                        dt: *d,
                        subject: subject.clone(),
                        kind,
                        episode,
                        value,
                        verdict: v,
                    });
                }
                Step::StillFiring if i + 1 == dates.len() => still.push(subject.clone()),
                Step::StillFiring | Step::Quiet => {}
            }
        }
    }
    (out, still)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn day(i: i64) -> Date {
        d("2026-10-01") + jiff::Span::new().days(i - 1)
    }

    fn drop_sd() -> AlertCondition {
        AlertCondition::Drop {
            days: 14,
            stddevs: Some(3.0),
            below_median: None,
            min_history: 7,
            min_drop: 0.15,
        }
    }

    fn series(values: &[(i64, f64)]) -> Series {
        values.iter().map(|(i, v)| (day(*i), *v)).collect()
    }

    fn kinds(t: &[Transition]) -> Vec<(Date, Kind)> {
        t.iter().map(|t| (t.dt, t.kind)).collect()
    }

    #[test]
    fn thresholds() {
        let below = AlertCondition::Below(0.9);
        assert!(judge(&below, Some(0.89), None).firing);
        assert!(!judge(&below, Some(0.9), None).firing);
        let above = AlertCondition::Above(0.05);
        assert!(judge(&above, Some(0.06), None).firing);
        assert!(!judge(&above, Some(0.05), None).firing);
        assert!(!judge(&below, None, None).firing);
    }

    #[test]
    fn baseline_statistics_and_window() {
        let s = series(&[(1, 1.0), (2, 0.8), (3, 0.9), (10, 0.5)]);
        let b = baseline(&s, &History::default(), day(10), 14);
        assert_eq!(
            (b.from, b.to, b.days),
            (day(10) - jiff::Span::new().days(14), day(10), 3)
        );
        assert!((b.mean.unwrap() - 0.9).abs() < 1e-12);
        assert!((b.sd.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(b.median, Some(0.9));
        // Even count: the median is the midpoint, like SQL's MEDIAN.
        let b = baseline(
            &series(&[(1, 1.0), (2, 0.5)]),
            &History::default(),
            day(3),
            14,
        );
        assert_eq!(b.median, Some(0.75));
        assert_eq!(
            b.sd.map(|x| (x * 1e6).round()),
            Some((0.125f64.sqrt() * 1e6).round())
        );
        // One day: no standard deviation.
        assert_eq!(
            baseline(&series(&[(1, 1.0)]), &History::default(), day(3), 14).sd,
            None
        );
    }

    #[test]
    fn drop_against_own_baseline() {
        let c = AlertCondition::Drop {
            days: 14,
            stddevs: Some(3.0),
            below_median: None,
            min_history: 7,
            min_drop: 0.1,
        };
        let b = |mean: f64, sd: f64, days: usize| Baseline {
            from: day(1),
            to: day(15),
            frozen: false,
            days,
            excluded: vec![],
            mean: Some(mean),
            sd: Some(sd),
            median: Some(mean),
        };
        // mean 0.9, sd 0.05: allowance max(0.15, 0.1) = 0.15 → threshold 0.75.
        let v = judge(&c, Some(0.74), Some(&b(0.9, 0.05, 14)));
        assert!(v.firing);
        assert!((v.threshold.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(v.baseline, Some(0.9));
        assert!(!judge(&c, Some(0.76), Some(&b(0.9, 0.05, 14))).firing);
        // A perfectly stable baseline (sd 0) does not make every wobble an alert.
        assert!(!judge(&c, Some(0.95), Some(&b(1.0, 0.0, 14))).firing);
        assert!(judge(&c, Some(0.89), Some(&b(1.0, 0.0, 14))).firing);
        // Too little history: never judged.
        assert!(!judge(&c, Some(0.1), Some(&b(0.9, 0.05, 6))).firing);
        let med = AlertCondition::Drop {
            days: 14,
            stddevs: None,
            below_median: Some(0.2),
            min_history: 3,
            min_drop: 0.1,
        };
        assert!(judge(&med, Some(0.69), Some(&b(0.9, 0.0, 5))).firing);
        assert!(!judge(&med, Some(0.71), Some(&b(0.9, 0.0, 5))).firing);
    }

    /// The reported defect: a collapse to 0 from day 10 used to resolve on day 12, once
    /// two collapsed days had entered the baseline. It keeps firing (a repeat each day at
    /// 24 h) until the first recovered day, and the baseline stays the pre-episode one.
    #[test]
    fn a_sustained_collapse_keeps_firing_until_it_recovers() {
        let values: Vec<(i64, f64)> = (1..=30)
            .map(|i| (i, if (10..20).contains(&i) { 0.0 } else { 1.0 }))
            .collect();
        let s: BTreeMap<String, Series> = [("amy".to_string(), series(&values))].into();
        let dates: Vec<Date> = (1..=30).map(day).collect();
        let mut state = BTreeMap::new();
        let (t, still) = step_dates(&drop_sd(), &s, &mut state, &dates, RepeatEvery::Days(1));
        let mut want = vec![(day(10), Kind::Fire)];
        want.extend((11..20).map(|i| (day(i), Kind::Repeat)));
        want.push((day(20), Kind::Resolve));
        assert_eq!(kinds(&t), want);
        assert!(still.is_empty());
        // Every event of the episode judged against the pre-episode baseline, and named so.
        for x in &t {
            assert_eq!(x.episode, "2026-10-10");
            assert_eq!(x.verdict.baseline, Some(1.0));
            assert!(
                x.verdict
                    .basis
                    .contains("baseline 2026-09-26–2026-10-09, 9 scored day(s)"),
                "{}",
                x.verdict.basis
            );
        }
        assert!(
            t[1].verdict
                .basis
                .contains("as before this episode began on 2026-10-10")
        );
        // After the episode its days are left out of the window.
        let h = &state["amy"];
        let b = baseline(&s["amy"], h, day(25), 14);
        assert_eq!(b.excluded, (11..20).map(day).collect::<Vec<_>>());
        assert!(b.describe().contains("left out while firing: 2026-10-11"));
        assert_eq!(b.mean, Some(1.0));
    }

    /// Every third day at 72 h, and never twice on one day.
    #[test]
    fn repeats_once_per_interval() {
        let values: Vec<(i64, f64)> = (1..=20)
            .map(|i| (i, if i >= 10 { 0.0 } else { 1.0 }))
            .collect();
        let s: BTreeMap<String, Series> = [("amy".to_string(), series(&values))].into();
        let mut state = BTreeMap::new();
        let dates: Vec<Date> = (1..=20).map(day).collect();
        let (t, still) = step_dates(&drop_sd(), &s, &mut state, &dates, RepeatEvery::Days(3));
        assert_eq!(
            kinds(&t),
            vec![
                (day(10), Kind::Fire),
                (day(13), Kind::Repeat),
                (day(16), Kind::Repeat),
                (day(19), Kind::Repeat)
            ]
        );
        assert_eq!(still, ["amy"]);
        // The same day again: still firing, nothing new.
        let (t, still) = step_dates(&drop_sd(), &s, &mut state, &[day(20)], RepeatEvery::Days(3));
        assert!(t.is_empty());
        assert_eq!(still, ["amy"]);
        assert_eq!(
            RepeatEvery::days_of(std::time::Duration::from_hours(72)),
            RepeatEvery::Days(3)
        );
        assert_eq!(
            RepeatEvery::days_of(std::time::Duration::from_hours(36)),
            RepeatEvery::Days(2)
        );
        assert_eq!(
            RepeatEvery::days_of(std::time::Duration::from_mins(1)),
            RepeatEvery::Days(1)
        );
    }

    /// A slow decline of 5 points a day fires once it crosses the threshold and stays
    /// firing while it goes on.
    #[test]
    fn a_slow_decline_fires_and_stays_firing() {
        let values: Vec<(i64, f64)> = (1..=22)
            .map(|i| {
                (
                    i,
                    if i <= 14 {
                        1.0
                    } else {
                        1.0 - 0.05 * (i - 14) as f64
                    },
                )
            })
            .collect();
        let s: BTreeMap<String, Series> = [("amy".to_string(), series(&values))].into();
        let mut state = BTreeMap::new();
        let dates: Vec<Date> = (1..=22).map(day).collect();
        let (t, _) = step_dates(&drop_sd(), &s, &mut state, &dates, RepeatEvery::Days(1));
        let fire = t.iter().position(|x| x.kind == Kind::Fire).expect("fires");
        assert!(
            t[fire + 1..].iter().all(|x| x.kind == Kind::Repeat),
            "{:?}",
            kinds(&t)
        );
        assert_eq!(t.last().unwrap().dt, day(22));
        // It fired on the first day below its threshold.
        let first = &t[fire];
        assert!(first.value < first.verdict.threshold.unwrap());
        assert!(t.iter().all(|x| x.kind != Kind::Resolve));
    }

    /// A steady value never fires; a value missing on a day neither fires nor resolves.
    #[test]
    fn clean_and_absent_days() {
        let s: BTreeMap<String, Series> = [(
            "amy".to_string(),
            series(&(1..=30).map(|i| (i, 0.97)).collect::<Vec<_>>()),
        )]
        .into();
        let mut state = BTreeMap::new();
        let dates: Vec<Date> = (1..=30).map(day).collect();
        assert!(
            step_dates(&drop_sd(), &s, &mut state, &dates, RepeatEvery::Days(1))
                .0
                .is_empty()
        );
        let mut h = History::default();
        h.apply(Kind::Fire, day(3), 0, "2026-10-03");
        let v = judge(&AlertCondition::Below(0.5), None, None);
        assert_eq!(
            step(&h, &v, false, day(4), 0, RepeatEvery::Days(1)),
            Step::Quiet
        );
    }

    /// Recorded rows rebuild the history: a `firing` while open is a repeat.
    #[test]
    fn history_from_recorded_rows() {
        let mut h = History::default();
        h.apply_recorded("firing", day(10), 1, "2026-10-10");
        h.apply_recorded("firing", day(11), 2, "ignored");
        h.apply_recorded("resolved", day(12), 3, "ignored");
        h.apply_recorded("resolved", day(13), 4, "ignored");
        h.apply_recorded("firing", day(20), 5, "2026-10-20");
        assert_eq!(h.episodes.len(), 2);
        assert_eq!(h.episodes[0].end, Some(day(12)));
        assert_eq!(h.episodes[0].last_notified, day(11));
        assert!(h.firing_on(day(11)) && !h.firing_on(day(12)) && h.firing_on(day(25)));
        assert_eq!(h.open().map(|e| e.id.as_str()), Some("2026-10-20"));
        assert_eq!(
            event_id("r", "amy", "2026-10-20", Kind::Repeat, "2026-10-21"),
            "r/amy/2026-10-20/repeat-2026-10-21"
        );
    }

    proptest! {
        /// A replay of many dates in one pass equals evaluating them one at a time with
        /// the state rebuilt from the recorded events each time (the daily cadence).
        #[test]
        fn replay_equals_daily_cadence(
            values in proptest::collection::vec(proptest::option::of(0u8..=20), 10..45),
            repeat in 1i64..4,
            median in any::<bool>(),
        ) {
            let condition = if median {
                AlertCondition::Drop { days: 10, stddevs: None, below_median: Some(0.2), min_history: 3, min_drop: 0.1 }
            } else {
                AlertCondition::Drop { days: 10, stddevs: Some(2.0), below_median: None, min_history: 3, min_drop: 0.1 }
            };
            let s: Series = values.iter().enumerate()
                .filter_map(|(i, v)| v.map(|v| (day(i as i64 + 1), f64::from(v) / 20.0)))
                .collect();
            let all: BTreeMap<String, Series> = [("amy".to_string(), s)].into();
            let dates: Vec<Date> = (1..=values.len() as i64).map(day).collect();
            let mut state = BTreeMap::new();
            let (replay, _) = step_dates(&condition, &all, &mut state, &dates, RepeatEvery::Days(repeat));
            let mut daily = Vec::new();
            let mut recorded: Vec<Transition> = Vec::new();
            for d in &dates {
                let mut h = History::default();
                for t in &recorded {
                    h.apply_recorded(t.kind.state(), t.dt, 0, &t.episode);
                }
                let mut st: BTreeMap<String, History> = [("amy".to_string(), h)].into();
                let (t, _) = step_dates(&condition, &all, &mut st, &[*d], RepeatEvery::Days(repeat));
                recorded.extend(t.iter().cloned());
                daily.extend(t);
            }
            prop_assert_eq!(replay, daily);
        }
    }
}
