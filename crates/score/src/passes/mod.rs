//! The passes around the daily chunks: the review pass before them (record-level KPIs
//! over the whole warehouse, [`review_pass`]) and the period pass after them (the period
//! tables from the daily rows just computed, [`period_pass`]).

mod period_pass;
mod review_pass;

pub(crate) use period_pass::score_periods;
#[cfg(test)]
pub(crate) use review_pass::DAYS_FROM_LAST;
pub(crate) use review_pass::{all_facts, register_review, review_pass};
