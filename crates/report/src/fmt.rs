//! Numbers and dates as each locale writes them. English and Simplified Chinese (CLDR
//! `en`, `zh-Hans-CN`) group digits by three with `,` and use `.` for decimals, so a
//! number reads the same on both pages; dates, periods and durations differ.
//!
//! Every number a page shows from a score table is written through [`Fmt`], which says
//! how it was rounded (`data-f` on the page), so a test can recompute it from the table.

use crmdq_config::Lang;
use jiff::civil::Date;

/// How a value is written: the rounding a reader (and a test) can reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// A ratio as a percentage with one decimal (`0.9234` → `92.3%`).
    Pct,
    /// A whole number, grouped (`12345` → `12,345`).
    Int,
    /// One decimal (scores).
    D1,
    /// Two decimals, grouped (amounts, means).
    D2,
    /// One decimal with its sign (`+1.2`, `-0.4`, `0.0`).
    S1,
    /// A change of a ratio in percentage points, signed (`+1.2 pt`).
    Pt,
}

impl Fmt {
    pub fn code(self) -> &'static str {
        match self {
            Fmt::Pct => "pct",
            Fmt::Int => "int",
            Fmt::D1 => "d1",
            Fmt::D2 => "d2",
            Fmt::S1 => "s1",
            Fmt::Pt => "pt",
        }
    }

    /// How a column of the score tables is shown.
    pub fn of(column: &str) -> Fmt {
        match column {
            c if c.ends_with("_rate") => Fmt::Pct,
            "checkin_coverage" | "checkin_response_quality" => Fmt::Pct,
            "score" | "prev_score" | "checkin_response_minutes" => Fmt::D1,
            "score_change" => Fmt::S1,
            "order_amount" | "mean_satisfaction" => Fmt::D2,
            _ => Fmt::Int,
        }
    }

    /// The change of a value of this format from one period to the next.
    #[must_use]
    pub fn change(self) -> Fmt {
        match self {
            Fmt::Pct => Fmt::Pt,
            Fmt::Int => Fmt::S1,
            other => other,
        }
    }

    pub fn write(self, v: f64) -> String {
        match self {
            Fmt::Pct => format!("{}%", decimal(v * 100.0, 1)),
            Fmt::Int => decimal(v, 0),
            Fmt::D1 => decimal(v, 1),
            Fmt::D2 => decimal(v, 2),
            Fmt::S1 => signed(v, 1, ""),
            Fmt::Pt => signed(v * 100.0, 1, " pt"),
        }
    }
}

/// `v` rounded to `places` decimals (Rust's formatting: round half to even on exact
/// ties), integer part grouped by three.
pub fn decimal(v: f64, places: usize) -> String {
    let s = format!("{:.*}", places, v.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let mut out = String::with_capacity(s.len() + 4);
    // "-0.0" is written as "0.0".
    if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    let n = int.len();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn signed(v: f64, places: usize, unit: &str) -> String {
    let d = decimal(v, places);
    if d.starts_with('-') || d.chars().all(|c| !c.is_ascii_digit() || c == '0') {
        format!("{d}{unit}")
    } else {
        format!("+{d}{unit}")
    }
}

/// A date as the locale writes it: `Mon 2 Nov 2026`, `2026年11月2日`.
pub fn date(d: Date, lang: Lang) -> String {
    match lang {
        Lang::En => format!(
            "{} {} {} {}",
            ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
                [usize::try_from(d.weekday().to_monday_one_offset() - 1).unwrap_or(0)],
            d.day(),
            MONTHS[usize::try_from(d.month() - 1).unwrap_or(0)],
            d.year()
        ),
        Lang::ZhCn => format!("{}年{}月{}日", d.year(), d.month(), d.day()),
    }
}

/// A short date: `2 Nov`, `11月2日`.
pub fn short_date(d: Date, lang: Lang) -> String {
    match lang {
        Lang::En => format!(
            "{} {}",
            d.day(),
            MONTHS[usize::try_from(d.month() - 1).unwrap_or(0)]
        ),
        Lang::ZhCn => format!("{}月{}日", d.month(), d.day()),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A period's name: `November 2026`, `Week 45, 2026`, `Q4 2026`; `2026年11月`,
/// `2026年第45周`, `2026年第4季度`. Labels of another shape are shown as they are.
pub fn period(label: &str, lang: Lang) -> String {
    let Some((year, rest)) = label.split_once('-') else {
        return label.to_string();
    };
    if let Some(w) = rest.strip_prefix('W') {
        let w = w.trim_start_matches('0');
        return match lang {
            Lang::En => format!("Week {w}, {year}"),
            Lang::ZhCn => format!("{year}年第{w}周"),
        };
    }
    if let Some(q) = rest.strip_prefix('Q') {
        return match lang {
            Lang::En => format!("Q{q} {year}"),
            Lang::ZhCn => format!("{year}年第{q}季度"),
        };
    }
    match rest.parse::<usize>() {
        Ok(m @ 1..=12) => match lang {
            Lang::En => format!("{} {year}", MONTHS_LONG[m - 1]),
            Lang::ZhCn => format!("{year}年{m}月"),
        },
        _ => label.to_string(),
    }
}

/// A duration in seconds, to the minute: `3 h 12 min`, `3小时12分钟` (days past 48 h).
pub fn duration(secs: i64, lang: Lang) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match lang {
        Lang::En if secs >= 172_800 => format!("{d} d {h} h"),
        Lang::En if secs >= 3600 => format!("{} h {m} min", secs / 3600),
        Lang::En => format!("{m} min"),
        Lang::ZhCn if secs >= 172_800 => format!("{d}天{h}小时"),
        Lang::ZhCn if secs >= 3600 => format!("{}小时{m}分钟", secs / 3600),
        Lang::ZhCn => format!("{m}分钟"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(Fmt::Pct.write(0.92345), "92.3%");
        assert_eq!(Fmt::Pct.write(1.0), "100.0%");
        assert_eq!(Fmt::Int.write(1_234_567.0), "1,234,567");
        assert_eq!(Fmt::Int.write(-1234.0), "-1,234");
        assert_eq!(Fmt::D2.write(1234.5), "1,234.50");
        assert_eq!(Fmt::S1.write(1.25), "+1.2");
        assert_eq!(Fmt::S1.write(-0.04), "0.0");
        assert_eq!(Fmt::S1.write(-3.0), "-3.0");
        assert_eq!(Fmt::Pt.write(0.015), "+1.5 pt");
        assert_eq!(Fmt::of("completeness_rate"), Fmt::Pct);
        assert_eq!(Fmt::of("checkin_coverage"), Fmt::Pct);
        assert_eq!(Fmt::of("entries"), Fmt::Int);
    }

    #[test]
    fn dates_and_periods() {
        let d = jiff::civil::date(2026, 11, 2);
        assert_eq!(date(d, Lang::En), "Mon 2 Nov 2026");
        assert_eq!(date(d, Lang::ZhCn), "2026年11月2日");
        assert_eq!(period("2026-11", Lang::En), "November 2026");
        assert_eq!(period("2026-11", Lang::ZhCn), "2026年11月");
        assert_eq!(period("2026-W05", Lang::ZhCn), "2026年第5周");
        assert_eq!(period("2026-Q4", Lang::En), "Q4 2026");
        assert_eq!(duration(3 * 3600 + 12 * 60 + 5, Lang::ZhCn), "3小时12分钟");
        assert_eq!(duration(3 * 86_400, Lang::En), "3 d 0 h");
    }
}
