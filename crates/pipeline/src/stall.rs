//! Stall detection for `run`: a partition with messages waiting (lag > 0) whose read
//! position has not moved for `after` is stalled — e.g. a message the broker cannot hand
//! out (tansu caps fetches at 5 MiB), a fetch error that never clears, or a warehouse
//! that stays unwritable. Lag alone cannot tell a busy partition from a stuck one; lag
//! with no movement can. Pure bookkeeping over a monotonic clock, so it is unit-tested.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crmdq_source::kafka::Tp;

struct Watch {
    next: i64,
    since: Instant,
    stalled: bool,
}

/// A partition starting or ending a stall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StallChange {
    Stalled {
        tp: Tp,
        next: i64,
        lag: i64,
        stuck_for: Duration,
    },
    Resumed {
        tp: Tp,
        stuck_for: Duration,
    },
}

pub struct StallWatch {
    after: Duration,
    parts: BTreeMap<Tp, Watch>,
}

impl StallWatch {
    pub fn new(after: Duration) -> StallWatch {
        StallWatch {
            after,
            parts: BTreeMap::new(),
        }
    }

    /// Note `tp`'s position `next` and lag at `now`; returns a change of state, if any.
    pub fn observe(&mut self, tp: &Tp, next: i64, lag: i64, now: Instant) -> Option<StallChange> {
        let w = self.parts.entry(tp.clone()).or_insert(Watch {
            next,
            since: now,
            stalled: false,
        });
        if next != w.next || lag <= 0 {
            let was = w.stalled;
            let stuck_for = now.saturating_duration_since(w.since);
            *w = Watch {
                next,
                since: now,
                stalled: false,
            };
            return was.then(|| StallChange::Resumed {
                tp: tp.clone(),
                stuck_for,
            });
        }
        let stuck_for = now.saturating_duration_since(w.since);
        if !w.stalled && stuck_for >= self.after {
            w.stalled = true;
            return Some(StallChange::Stalled {
                tp: tp.clone(),
                next,
                lag,
                stuck_for,
            });
        }
        None
    }

    /// `tp` is no longer assigned here.
    pub fn forget(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }

    /// The stalled partitions, as `topic/partition`.
    pub fn stalled(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter(|(_, w)| w.stalled)
            .map(|(tp, _)| format!("{}/{}", tp.0, tp.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_only_with_lag_and_no_movement_and_resumes_on_movement() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let tp: Tp = ("crm".into(), 0);
        let mut w = StallWatch::new(Duration::from_secs(10));
        assert_eq!(w.observe(&tp, 5, 3, s(0)), None);
        assert_eq!(w.observe(&tp, 5, 3, s(9)), None, "not yet");
        // Caught up (lag 0) for a long time: idle, not stalled.
        assert_eq!(w.observe(&tp, 5, 0, s(30)), None);
        assert_eq!(w.observe(&tp, 5, 0, s(60)), None);
        // Moving: never stalled however long it runs.
        for i in 0..20 {
            assert_eq!(w.observe(&tp, 6 + i, 100, s(61 + 5 * i as u64)), None);
        }
        // Stuck with lag: stalled once, reported once.
        assert_eq!(w.observe(&tp, 30, 7, s(200)), None);
        assert_eq!(
            w.observe(&tp, 30, 7, s(210)),
            Some(StallChange::Stalled {
                tp: tp.clone(),
                next: 30,
                lag: 7,
                stuck_for: Duration::from_secs(10)
            })
        );
        assert_eq!(w.observe(&tp, 30, 7, s(220)), None);
        assert_eq!(w.stalled(), vec!["crm/0".to_string()]);
        // It moves: resumed.
        assert_eq!(
            w.observe(&tp, 31, 6, s(225)),
            Some(StallChange::Resumed {
                tp: tp.clone(),
                stuck_for: Duration::from_secs(25)
            })
        );
        assert!(w.stalled().is_empty());
        w.observe(&tp, 31, 6, s(300));
        assert_eq!(w.stalled().len(), 1);
        w.forget(&tp);
        assert!(w.stalled().is_empty());
    }
}
