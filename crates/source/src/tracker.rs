//! Where each assigned Kafka partition stands: the next offset to accept, what was
//! committed, and what to make of a message that is not the next one. Pure (no client,
//! no clock): the consumer loop feeds it messages and asks the broker's watermarks only
//! when an offset does not follow, so the offset state machine is tested on its own
//! against a model (`tests` below).
//!
//! Offset jumps are read from positions, not from librdkafka's log lines: a message that
//! is not the next one is either stale (prefetched before a seek, a duplicate fetch), a
//! harmless gap (transaction markers, compaction), or the sign that librdkafka reset the
//! position because the one asked for no longer exists on the broker (retention removed
//! it, or the topic was re-created). The broker's watermarks tell which.

use std::collections::BTreeMap;

use crate::kafka::Tp;

/// A partition's low and high watermarks (first offset held, next offset to be written).
pub type Watermarks = (i64, i64);

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Take it: it is the next message of its partition (after `jump`, if any).
    Accept(Option<Jump>),
    /// Drop it: stale or already taken.
    Skip,
}

/// How the position moved to an accepted message that was not the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jump {
    /// Offsets between `expected` and `resumed_at` are not on the broker any more
    /// (retention removed them before they were read): those messages are lost.
    Lost { expected: i64, resumed_at: i64 },
    /// The position went backwards because the topic was re-created or truncated: what
    /// follows is read as new messages.
    Rewound { expected: i64, resumed_at: i64 },
    /// Offsets were skipped that never held a readable message (transaction markers,
    /// compacted records): nothing is lost.
    Gap { expected: i64, resumed_at: i64 },
}

impl Jump {
    /// Whether the position was reset (librdkafka's `auto.offset.reset` applied).
    #[must_use]
    pub fn is_reset(self) -> bool {
        !matches!(self, Jump::Gap { .. })
    }

    /// Messages lost by the jump.
    #[must_use]
    pub fn lost(self) -> u64 {
        match self {
            Jump::Lost {
                expected,
                resumed_at,
            } => (resumed_at - expected).unsigned_abs(),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    /// Next offset expected (everything before is buffered or committed).
    next: i64,
    /// After a seek back from a later position: that position. Messages fetched before
    /// the seek may still arrive, continuing from there; they are stale. A message the
    /// seek fetched lies in `next..stale_from` (a real message was read there before),
    /// so only those are taken until one is.
    stale_from: Option<i64>,
}

impl Part {
    fn at(next: i64) -> Self {
        Part {
            next,
            stale_from: None,
        }
    }
}

/// The positions of the partitions this consumer holds.
#[derive(Debug, Clone, Default)]
pub struct PartitionTracker {
    parts: BTreeMap<Tp, Part>,
    /// Next offset as committed in the log, per held partition.
    committed: BTreeMap<Tp, i64>,
}

impl PartitionTracker {
    /// `tp` is now held, starting at `next` (the commit log's position).
    pub fn assign(&mut self, tp: Tp, next: i64) {
        self.committed.insert(tp.clone(), next);
        self.parts.insert(tp, Part::at(next));
    }

    /// `tp` is no longer held.
    pub fn revoke(&mut self, tp: &Tp) {
        self.parts.remove(tp);
        self.committed.remove(tp);
    }

    /// `tp` was sought back to `next` (and `next` is its committed position): messages
    /// fetched before the seek are stale from here on.
    pub fn seek_back(&mut self, tp: &Tp, next: i64) {
        self.committed.insert(tp.clone(), next);
        let from = self.parts.get(tp).map(|p| p.next).filter(|n| *n > next);
        self.parts.insert(
            tp.clone(),
            Part {
                stale_from: from,
                ..Part::at(next)
            },
        );
    }

    /// A message at `offset` of `tp` arrived. `watermarks` asks the broker for the
    /// partition's watermarks; it is called only when `offset` is not the next one, and
    /// None (the broker did not answer) never leads to a reset.
    pub fn on_message(
        &mut self,
        tp: &Tp,
        offset: i64,
        watermarks: impl FnOnce(&Tp) -> Option<Watermarks>,
    ) -> Verdict {
        let committed = self.committed.get(tp).copied().unwrap_or(0);
        let st = self.parts.entry(tp.clone()).or_insert(Part::at(committed));
        let expected = st.next;
        let accept = |st: &mut Part, jump| {
            *st = Part::at(offset + 1);
            Verdict::Accept(jump)
        };
        if offset == expected {
            return accept(st, None);
        }
        if offset > expected && st.stale_from.is_none_or(|s| offset < s) {
            // A forward gap: lost to retention if the broker no longer holds `expected`.
            let jump = match watermarks(tp) {
                Some((low, _)) if low > expected => Jump::Lost {
                    expected,
                    resumed_at: offset,
                },
                _ => Jump::Gap {
                    expected,
                    resumed_at: offset,
                },
            };
            return accept(st, Some(jump));
        }
        // Behind the position, or fetched before a seek: stale, unless the position
        // itself is gone from the broker (librdkafka then reset it, and this is where it
        // went). Asked each time: retention may move at any moment, and such messages
        // are rare (librdkafka drops what it fetched before a seek).
        match watermarks(tp) {
            // The position is beyond the end: the topic was re-created or truncated, and
            // librdkafka went back to the earliest offset.
            Some((_, high)) if expected > high && offset < expected => accept(
                st,
                Some(Jump::Rewound {
                    expected,
                    resumed_at: offset,
                }),
            ),
            // Retention removed the position: librdkafka went on from the earliest offset
            // still held (`low`). After a seek, a message at or past the stale position
            // is the reset's only if retention passed that position too (then nothing
            // real lies between it and the message).
            Some((low, _))
                if expected < low
                    && offset >= low
                    && st.stale_from.is_none_or(|s| offset < s || low >= s) =>
            {
                accept(
                    st,
                    Some(Jump::Lost {
                        expected,
                        resumed_at: offset,
                    }),
                )
            }
            // The position is still on the broker (or the broker did not answer): stale.
            Some(_) | None => Verdict::Skip,
        }
    }

    /// The partitions whose next offset differs from the committed one, with that next
    /// offset: what a commit would record.
    #[must_use]
    pub fn advanced(&self) -> BTreeMap<Tp, i64> {
        self.parts
            .iter()
            .filter(|(tp, s)| self.committed.get(*tp) != Some(&s.next))
            .map(|(tp, s)| (tp.clone(), s.next))
            .collect()
    }

    /// The committed position of `tp` (0 if never committed).
    #[must_use]
    pub fn committed(&self, tp: &Tp) -> i64 {
        self.committed.get(tp).copied().unwrap_or(0)
    }

    /// The next offset expected from `tp`, if held.
    #[must_use]
    pub fn next(&self, tp: &Tp) -> Option<i64> {
        self.parts.get(tp).map(|p| p.next)
    }

    /// A commit recorded `advanced` ([`PartitionTracker::advanced`]).
    pub fn committed_to(&mut self, advanced: &BTreeMap<Tp, i64>) {
        self.committed
            .extend(advanced.iter().map(|(tp, n)| (tp.clone(), *n)));
    }

    /// The held partitions.
    pub fn partitions(&self) -> impl Iterator<Item = &Tp> {
        self.parts.keys()
    }

    /// How many partitions are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp() -> Tp {
        ("t".to_string(), 0)
    }

    #[test]
    fn in_order_messages_are_taken_and_advance_the_position() {
        let mut t = PartitionTracker::default();
        t.assign(tp(), 5);
        let never = |_: &Tp| -> Option<Watermarks> { panic!("no broker question in order") };
        assert_eq!(t.on_message(&tp(), 5, never), Verdict::Accept(None));
        assert_eq!(t.on_message(&tp(), 6, never), Verdict::Accept(None));
        assert_eq!(t.advanced(), [(tp(), 7)].into());
        t.committed_to(&t.advanced());
        assert!(t.advanced().is_empty());
    }

    #[test]
    fn a_forward_jump_is_lost_only_when_the_broker_no_longer_holds_the_position() {
        let mut t = PartitionTracker::default();
        t.assign(tp(), 10);
        // Retention removed 10..40: librdkafka reset to the earliest (40).
        let v = t.on_message(&tp(), 40, |_| Some((40, 100)));
        assert_eq!(
            v,
            Verdict::Accept(Some(Jump::Lost {
                expected: 10,
                resumed_at: 40
            }))
        );
        assert_eq!(
            Jump::Lost {
                expected: 10,
                resumed_at: 40
            }
            .lost(),
            30
        );
        // A transaction marker at 41: a gap, nothing lost.
        let v = t.on_message(&tp(), 42, |_| Some((40, 100)));
        assert_eq!(
            v,
            Verdict::Accept(Some(Jump::Gap {
                expected: 41,
                resumed_at: 42
            }))
        );
    }

    #[test]
    fn a_rewind_is_a_reset_only_when_the_position_is_beyond_the_end() {
        let mut t = PartitionTracker::default();
        t.assign(tp(), 15);
        // The topic was re-created with 4 messages: the position 15 is gone.
        let v = t.on_message(&tp(), 0, |_| Some((0, 4)));
        assert_eq!(
            v,
            Verdict::Accept(Some(Jump::Rewound {
                expected: 15,
                resumed_at: 0
            }))
        );
        // A stale duplicate while the position is valid is skipped.
        let mut t = PartitionTracker::default();
        t.assign(tp(), 15);
        assert_eq!(t.on_message(&tp(), 3, |_| Some((0, 20))), Verdict::Skip);
        assert_eq!(t.on_message(&tp(), 4, |_| Some((0, 20))), Verdict::Skip);
        // No answer from the broker never resets.
        let mut t = PartitionTracker::default();
        t.assign(tp(), 15);
        assert_eq!(t.on_message(&tp(), 0, |_| None), Verdict::Skip);
    }

    #[test]
    fn after_a_seek_only_the_sought_offset_is_taken() {
        let mut t = PartitionTracker::default();
        t.assign(tp(), 0);
        for o in 0..10 {
            assert_eq!(t.on_message(&tp(), o, |_| None), Verdict::Accept(None));
        }
        t.seek_back(&tp(), 3);
        // Prefetched 10, 11 arrive before the seek takes effect.
        assert_eq!(t.on_message(&tp(), 10, |_| Some((0, 12))), Verdict::Skip);
        assert_eq!(t.on_message(&tp(), 11, |_| None), Verdict::Skip);
        assert_eq!(t.on_message(&tp(), 3, |_| None), Verdict::Accept(None));
        assert_eq!(t.next(&tp()), Some(4));
    }

    /// What the consumer may see on one partition.
    #[derive(Debug, Clone)]
    enum Step {
        /// The broker delivers the next message of the log.
        Deliver,
        /// A stale message (already delivered earlier) arrives again.
        Stale(usize),
        /// The loop seeks back to the committed position (a stall or fence).
        SeekBack,
        /// A message fetched before the last seek arrives (continuing the old position).
        /// librdkafka discards those once the seek is applied (its fetch version
        /// barrier), so only until the first message from the new position, and only
        /// while the broker's retention stays where it was at the seek.
        StaleAhead,
        /// A commit records the position.
        Commit,
        /// Retention removes the oldest `n` messages of the log.
        Retain(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => Just(Step::Deliver),
            2 => (0usize..50).prop_map(Step::Stale),
            1 => Just(Step::SeekBack),
            2 => Just(Step::StaleAhead),
            2 => Just(Step::Commit),
            1 => (1u8..5).prop_map(Step::Retain),
        ]
    }

    proptest! {
        /// Against a model broker (a log of offsets with transaction-marker gaps, a
        /// retention horizon and librdkafka's fetch position): every offset is taken at
        /// most once after its last seek, taken offsets increase, and every offset still
        /// on the broker at the position is taken unless counted lost.
        #[test]
        fn taken_offsets_match_the_model(
            gaps in proptest::collection::vec(any::<bool>(), 60),
            steps in proptest::collection::vec(step(), 1..120),
        ) {
            // The log's offsets: a `true` gap skips one offset (a transaction marker).
            let mut log = Vec::new();
            let mut o = 0i64;
            for g in &gaps {
                if *g { o += 1; }
                log.push(o);
                o += 1;
            }
            let high = o;
            let mut low = 0i64;
            let mut t = PartitionTracker::default();
            t.assign(tp(), 0);
            // librdkafka's fetch position: an index into `log`.
            let mut fetch = 0usize;
            // The fetch position from before the last seek (its prefetched messages).
            let mut old_fetch: Option<usize> = None;
            let mut taken: Vec<i64> = Vec::new();
            // Offset ranges reported lost: [expected, resumed_at).
            let mut lost: Vec<(i64, i64)> = Vec::new();
            let mut committed = 0i64;
            for s in steps {
                match s {
                    Step::Deliver => {
                        // librdkafka resets an out-of-range fetch position to the earliest.
                        while fetch < log.len() && log[fetch] < low { fetch += 1; }
                        let Some(&off) = log.get(fetch) else { continue };
                        fetch += 1;
                        let before = t.next(&tp()).unwrap_or(0);
                        old_fetch = None;
                        match t.on_message(&tp(), off, |_| Some((low, high))) {
                            Verdict::Accept(j) => {
                                if let Some(Jump::Lost { expected, resumed_at }) = j {
                                    // Only what the broker had really dropped.
                                    prop_assert!(log.iter().all(|o| *o < expected || *o >= resumed_at || *o < low));
                                    lost.push((expected, resumed_at));
                                }
                                prop_assert!(taken.last().is_none_or(|l| off > *l), "{off} after {taken:?}");
                                taken.push(off);
                            }
                            // Only what a stale message already took.
                            Verdict::Skip => prop_assert!(off < before, "the next fetched message {off} was skipped (next {before})"),
                        }
                    }
                    Step::StaleAhead => {
                        let Some(i) = old_fetch else { continue };
                        let Some(&off) = log.get(i) else { continue };
                        old_fetch = Some(i + 1);
                        if let Verdict::Accept(j) = t.on_message(&tp(), off, |_| Some((low, high))) {
                            if let Some(Jump::Lost { expected, resumed_at }) = j {
                                prop_assert!(log.iter().all(|o| *o < expected || *o >= resumed_at || *o < low));
                                lost.push((expected, resumed_at));
                            }
                            taken.push(off);
                        }
                    }
                    Step::Stale(i) => {
                        if let Some(&off) = log.get(i)
                            && off < t.next(&tp()).unwrap_or(0)
                        {
                            prop_assert_eq!(t.on_message(&tp(), off, |_| Some((low, high))), Verdict::Skip);
                        }
                    }
                    Step::SeekBack => {
                        // What librdkafka had prefetched continues from the old position.
                        let old = t.next(&tp()).unwrap_or(0);
                        t.seek_back(&tp(), committed);
                        taken.retain(|o| *o < committed);
                        lost.retain(|(e, _)| *e < committed);
                        old_fetch = log.iter().position(|o| *o >= old);
                        fetch = log.iter().position(|o| *o >= committed).unwrap_or(log.len());
                    }
                    Step::Commit => {
                        let adv = t.advanced();
                        t.committed_to(&adv);
                        committed = t.committed(&tp());
                    }
                    Step::Retain(n) => {
                        old_fetch = None;
                        low = (low + i64::from(n)).min(high);
                    }
                }
            }
            // Every message of the log before the position was taken exactly once or lies
            // in a range reported lost; nothing lost was ever on the broker when skipped.
            let next = t.next(&tp()).unwrap_or(0);
            for o in log.iter().copied().filter(|o| *o < next) {
                let n = taken.iter().filter(|t| **t == o).count();
                let in_lost = lost.iter().any(|(e, r)| *e <= o && o < *r);
                prop_assert!(n == 1 || (n == 0 && in_lost), "offset {o}: taken {n} times, lost {in_lost}; taken {taken:?} lost {lost:?}");
            }
            for o in &taken { prop_assert!(*o < next && log.contains(o)); }
        }
    }
}
