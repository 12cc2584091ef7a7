//! The charts, drawn as inline SVG in Rust: a trend line, a month calendar, horizontal
//! bars. Small, fixed shapes, so a few dozen lines each instead of a plotting crate (no
//! fonts to embed, no layout engine): they print sharply and need no script.

use std::fmt::Write as _;

/// Text for an SVG element or attribute.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// One point of a trend: its label (period) and value.
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
    pub text: String,
}

/// A trend of one KPI over the last periods: a line through the known values (gaps where
/// a period had none), the latest point marked, the target as a dashed line.
pub fn trend(points: &[Point], target: Option<f64>, unit_range: bool, title: &str) -> String {
    let (w, h, pad) = (160.0_f64, 44.0_f64, 5.0_f64);
    let known: Vec<f64> = points.iter().filter_map(|p| p.value).collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="trend" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    if known.is_empty() {
        s.push_str("</svg>");
        return s;
    }
    let (mut lo, mut hi) = if unit_range {
        (0.0, 1.0)
    } else {
        let lo = known.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo.min(0.0), hi)
    };
    if let Some(t) = target {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if (hi - lo).abs() < 1e-9 {
        hi = lo + 1.0;
    }
    let n = points.len().max(2) - 1;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    if let Some(t) = target {
        let _ = write!(
            s,
            r#"<line class="target" x1="{pad}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/>"#,
            w - pad,
            y(t),
            y(t)
        );
    }
    let mut path = String::new();
    let mut pen_up = true;
    for (i, p) in points.iter().enumerate() {
        match p.value {
            Some(v) => {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if pen_up { "M" } else { "L" },
                    x(i),
                    y(v)
                );
                pen_up = false;
            }
            None => pen_up = true,
        }
    }
    let _ = write!(s, r#"<path class="line" d="{}"/>"#, path.trim_end());
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.value {
            let last = i + 1 == points.len();
            let _ = write!(
                s,
                r#"<circle class="{}" cx="{:.1}" cy="{:.1}" r="{}"><title>{}: {}</title></circle>"#,
                if last { "pt last" } else { "pt" },
                x(i),
                y(v),
                if last { 3.5 } else { 2.2 },
                esc(&p.label),
                esc(&p.text)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// How a calendar day looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Entries, all complete, valid and on time.
    Good,
    /// Entries, the worst of the three rates at 80% or more.
    Some,
    /// Entries, a rate below 80%.
    Poor,
    /// A working day without entries.
    None,
    Absent,
    Off,
    /// Outside the period (padding of the first and last week).
    Outside,
}

impl DayKind {
    pub fn class(self) -> &'static str {
        match self {
            DayKind::Good => "good",
            DayKind::Some => "some",
            DayKind::Poor => "poor",
            DayKind::None => "none",
            DayKind::Absent => "absent",
            DayKind::Off => "off",
            DayKind::Outside => "outside",
        }
    }
}

pub struct Day {
    pub day: i8,
    pub kind: DayKind,
    /// What the day's cell says when pointed at (entries, rates).
    pub title: String,
    /// Entries that day, shown in the cell.
    pub entries: Option<i64>,
}

/// A calendar of weeks (rows, Monday first) × weekdays (columns).
pub fn calendar(weeks: &[[Option<Day>; 7]], weekday_names: [&str; 7]) -> String {
    let (cw, ch, top) = (58.0_f64, 40.0_f64, 18.0_f64);
    let w = cw * 7.0;
    let h = top + ch * weeks.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="calendar" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#
    );
    for (i, name) in weekday_names.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text class="wd" x="{:.1}" y="12">{}</text>"#,
            cw * i as f64 + cw / 2.0,
            esc(name)
        );
    }
    for (r, week) in weeks.iter().enumerate() {
        for (c, day) in week.iter().enumerate() {
            let Some(d) = day else { continue };
            let (x, y) = (cw * c as f64 + 1.0, top + ch * r as f64 + 1.0);
            let _ = write!(
                s,
                r#"<g class="day {}"><title>{}</title><rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" rx="4"/><text class="dn" x="{:.1}" y="{:.1}">{}</text>"#,
                d.kind.class(),
                esc(&d.title),
                cw - 2.0,
                ch - 2.0,
                x + 5.0,
                y + 13.0,
                d.day
            );
            if let Some(n) = d.entries {
                let _ = write!(
                    s,
                    r#"<text class="de" x="{:.1}" y="{:.1}">{n}</text>"#,
                    x + cw - 7.0,
                    y + ch - 8.0
                );
            }
            s.push_str("</g>");
        }
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: (label, value) scaled to the largest.
pub fn bars(items: &[(String, i64)]) -> String {
    let (w, bh, lw) = (520.0_f64, 20.0_f64, 220.0_f64);
    let max = items.iter().map(|i| i.1).max().unwrap_or(1).max(1) as f64;
    let h = bh * items.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="bars" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = bh * i as f64;
        let len = (w - lw - 60.0) * (*v as f64) / max;
        let _ = write!(
            s,
            r#"<text class="bl" x="{:.1}" y="{:.1}">{}</text><rect class="bar" x="{lw}" y="{:.1}" width="{len:.1}" height="{:.1}" rx="2"/><text class="bv" x="{:.1}" y="{:.1}">{v}</text>"#,
            lw - 6.0,
            y + 14.0,
            esc(label),
            y + 3.0,
            bh - 6.0,
            lw + len + 4.0,
            y + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_draws_gaps_and_escapes() {
        let p = |l: &str, v: Option<f64>| Point {
            label: l.into(),
            value: v,
            text: "x".into(),
        };
        let s = trend(
            &[p("a", Some(0.5)), p("b", None), p("c<", Some(0.9))],
            Some(0.8),
            true,
            "T&",
        );
        assert_eq!(s.matches('M').count(), 2, "a gap starts a new stroke: {s}");
        assert!(s.contains("c&lt;") && s.contains("T&amp;"));
        assert!(s.contains(r#"class="target""#));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }

    #[test]
    fn calendar_and_bars_have_one_shape_per_item() {
        let day = |n| {
            Some(Day {
                day: n,
                kind: DayKind::Good,
                title: "t".into(),
                entries: Some(3),
            })
        };
        let weeks = [[day(1), day(2), None, None, None, None, None]];
        let s = calendar(&weeks, ["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(s.matches("<rect").count(), 2);
        let b = bars(&[("x".into(), 3), ("y".into(), 0)]);
        assert_eq!(b.matches("<rect").count(), 2);
    }
}
