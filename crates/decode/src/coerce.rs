//! The contract's value coercions. Each returns `None` for "present but not coercible";
//! callers keep the raw text in that case.

use std::borrow::Cow;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Disambiguation, TimeZone};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// The text of a scalar JSON value (numbers in their JSON spelling); None for null.
/// Arrays and objects are rendered as compact JSON.
pub fn value_text(v: &Value) -> Option<String> {
    text(v).map(Cow::into_owned)
}

/// [`value_text`], borrowing a string value instead of copying it.
pub(crate) fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// NFKC (full-width → ASCII) and trim, only when needed (ASCII is borrowed).
pub fn nfkc_trim(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        Cow::Borrowed(s.trim())
    } else {
        Cow::Owned(s.nfkc().collect::<String>().trim().to_string())
    }
}

pub fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let t = nfkc_trim(s);
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(integral))
        }
        _ => None,
    }
}

fn integral(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => nfkc_trim(s)
            .replace(',', "")
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite()),
        _ => None,
    }
}

pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match nfkc_trim(s).to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "是" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "否" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub fn timestamp(v: &Value, tz: &TimeZone) -> Option<Timestamp> {
    match v {
        Value::String(s) => parse_timestamp(s, tz),
        _ => None,
    }
}

/// RFC 3339 with offset, or `YYYY-MM-DD HH:MM[:SS[.fff]]` (space or `T`) read in `tz`.
/// A local time that does not exist or is ambiguous (DST) resolves the `compatible` way.
pub fn parse_timestamp(s: &str, tz: &TimeZone) -> Option<Timestamp> {
    let t = nfkc_trim(s);
    if t.is_empty() {
        return None;
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Some(ts);
    }
    let dt: DateTime = t.parse().ok()?;
    tz.to_ambiguous_timestamp(dt)
        .disambiguate(Disambiguation::Compatible)
        .ok()
}
