//! Business date and reporting deadline (contract section 2).
//!
//! D is the local date of event_time in the pipeline's time zone. The deadline is the
//! policy's time of day on D + n days (calendar or working days), local, as an instant.
//! on_time is entered_at ≤ deadline; late_seconds is the lateness rounded up to whole
//! seconds, so a late entry is always at least 1 second late.

use std::collections::HashMap;

use crmdq_config::{Calendar, DayCount, DeadlinePolicy};
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{Disambiguation, TimeZone};

/// Deadline calculator for one record type's policy.
#[derive(Debug, Clone)]
pub struct Lateness {
    tz: TimeZone,
    policy: DeadlinePolicy,
    calendar: Calendar,
}

/// The verdict of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeliness {
    pub business_date: Date,
    pub deadline: Timestamp,
    pub on_time: bool,
    pub late_seconds: i64,
}

impl Lateness {
    pub fn new(tz: TimeZone, policy: DeadlinePolicy, calendar: Calendar) -> Self {
        Lateness {
            tz,
            policy,
            calendar,
        }
    }

    pub fn business_date(&self, event_time: Timestamp) -> Date {
        event_time.to_zoned(self.tz.clone()).date()
    }

    /// The deadline instant of business date `d`.
    pub fn deadline(&self, d: Date) -> Timestamp {
        let due = match self.policy.count {
            DayCount::Calendar => d
                .checked_add(jiff::Span::new().days(i64::from(self.policy.days)))
                .unwrap_or(d),
            DayCount::Working => {
                let mut day = d;
                let mut left = self.policy.days;
                while left > 0 {
                    day = day.tomorrow().unwrap_or(day);
                    if self.calendar.is_working_day(day) {
                        left -= 1;
                    }
                }
                day
            }
        };
        let local = due.to_datetime(self.policy.time);
        self.tz
            .to_ambiguous_timestamp(local)
            .disambiguate(Disambiguation::Compatible)
            .unwrap_or(Timestamp::MAX)
    }

    pub fn judge(&self, event_time: Timestamp, entered_at: Timestamp) -> Timeliness {
        let business_date = self.business_date(event_time);
        let deadline = self.deadline(business_date);
        late(business_date, deadline, entered_at)
    }
}

fn late(business_date: Date, deadline: Timestamp, entered_at: Timestamp) -> Timeliness {
    let diff_us = entered_at.as_microsecond() - deadline.as_microsecond();
    let late_seconds = if diff_us > 0 {
        (diff_us + 999_999) / 1_000_000
    } else {
        0
    };
    Timeliness {
        business_date,
        deadline,
        on_time: diff_us <= 0,
        late_seconds,
    }
}

/// Per-batch memo of deadlines by business date (most batches span few dates).
#[derive(Debug, Default)]
pub struct DeadlineMemo {
    by_date: HashMap<Date, Timestamp>,
}

impl DeadlineMemo {
    pub fn judge(
        &mut self,
        l: &Lateness,
        event_time: Timestamp,
        entered_at: Timestamp,
    ) -> Timeliness {
        let d = l.business_date(event_time);
        let deadline = *self.by_date.entry(d).or_insert_with(|| l.deadline(d));
        late(d, deadline, entered_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::Time;
    use proptest::prelude::*;

    fn sh() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn default_policy() -> Lateness {
        Lateness::new(
            sh(),
            DeadlinePolicy {
                time: Time::new(10, 0, 0, 0).unwrap(),
                days: 1,
                count: DayCount::Calendar,
            },
            Calendar::default(),
        )
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn exactly_at_deadline_is_on_time_one_microsecond_after_is_one_second_late() {
        let l = default_policy();
        let ev = ts("2026-11-26T07:20:00Z"); // 15:20 Shanghai on the 26th
        let t = l.judge(ev, ts("2026-11-27T02:00:00Z")); // 10:00 Shanghai on the 27th
        assert_eq!(t.deadline, ts("2026-11-27T02:00:00Z"));
        assert!(t.on_time);
        assert_eq!(t.late_seconds, 0);
        let t = l.judge(ev, ts("2026-11-27T02:00:00.000001Z"));
        assert!(!t.on_time);
        assert_eq!(t.late_seconds, 1);
        let t = l.judge(ev, ts("2026-11-27T02:00:01Z"));
        assert_eq!(t.late_seconds, 1);
        let t = l.judge(ev, ts("2026-11-27T02:00:01.5Z"));
        assert_eq!(t.late_seconds, 2);
    }

    #[test]
    fn business_date_crosses_utc_midnight() {
        let l = default_policy();
        // 20:00Z on the 26th is 04:00 on the 27th in Shanghai.
        assert_eq!(
            l.business_date(ts("2026-11-26T20:00:00Z")),
            Date::new(2026, 11, 27).unwrap()
        );
        assert_eq!(
            l.business_date(ts("2026-11-26T15:59:59Z")),
            Date::new(2026, 11, 26).unwrap()
        );
        assert_eq!(
            l.business_date(ts("2026-11-26T16:00:00Z")),
            Date::new(2026, 11, 27).unwrap()
        );
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_makeup_days() {
        let cal = Calendar {
            holidays: [
                Date::new(2026, 10, 1).unwrap(),
                Date::new(2026, 10, 2).unwrap(),
            ]
            .into(),
            workdays: [Date::new(2026, 10, 10).unwrap()].into(),
        };
        let l = Lateness::new(
            sh(),
            DeadlinePolicy {
                time: Time::new(10, 0, 0, 0).unwrap(),
                days: 1,
                count: DayCount::Working,
            },
            cal,
        );
        // Friday 2026-11-27 → Monday 2026-11-30 10:00.
        assert_eq!(
            l.deadline(Date::new(2026, 11, 27).unwrap()),
            ts("2026-11-30T02:00:00Z")
        );
        // Wednesday 2026-09-30 → Thursday and Friday are holidays → Monday 2026-10-05.
        assert_eq!(
            l.deadline(Date::new(2026, 9, 30).unwrap()),
            ts("2026-10-05T02:00:00Z")
        );
        // Friday 2026-10-09 → Saturday 2026-10-10 is a make-up workday.
        assert_eq!(
            l.deadline(Date::new(2026, 10, 9).unwrap()),
            ts("2026-10-10T02:00:00Z")
        );
    }

    #[test]
    fn dst_zone_deadline_is_local_time() {
        let l = Lateness::new(
            TimeZone::get("America/New_York").unwrap(),
            DeadlinePolicy {
                time: Time::new(10, 0, 0, 0).unwrap(),
                days: 1,
                count: DayCount::Calendar,
            },
            Calendar::default(),
        );
        // 2026-03-08 is the spring-forward day: 10:00 EDT = 14:00Z.
        assert_eq!(
            l.deadline(Date::new(2026, 3, 7).unwrap()),
            ts("2026-03-08T14:00:00Z")
        );
        assert_eq!(
            l.deadline(Date::new(2026, 3, 6).unwrap()),
            ts("2026-03-07T15:00:00Z")
        );
    }

    proptest! {
        /// Against a simple model: on_time ⇔ late_seconds = 0; late ⇒ late_seconds*1e6 ≥ diff > (late_seconds-1)*1e6;
        /// the deadline falls on D+1 local at 10:00; the memo agrees with the direct path.
        #[test]
        fn lateness_model(ev in 1_600_000_000_000_000i64..1_900_000_000_000_000i64, delay in -10_000_000_000i64..1_000_000_000_000i64) {
            let l = default_policy();
            let ev_ts = Timestamp::from_microsecond(ev).unwrap();
            let en_ts = Timestamp::from_microsecond(ev + delay).unwrap();
            let t = l.judge(ev_ts, en_ts);
            prop_assert_eq!(t.on_time, t.late_seconds == 0);
            let diff = en_ts.as_microsecond() - t.deadline.as_microsecond();
            if t.on_time { prop_assert!(diff <= 0); } else {
                prop_assert!(t.late_seconds >= 1);
                prop_assert!(t.late_seconds * 1_000_000 >= diff && diff > (t.late_seconds - 1) * 1_000_000);
            }
            let local = t.deadline.to_zoned(sh());
            prop_assert_eq!(local.date(), t.business_date.tomorrow().unwrap());
            prop_assert_eq!((local.hour(), local.minute(), local.second()), (10, 0, 0));
            let mut memo = DeadlineMemo::default();
            prop_assert_eq!(memo.judge(&l, ev_ts, en_ts), t);
        }
    }
}
