//! From the [`Model`] to what a page shows, in one language: every label from the label
//! table, every number written by [`Fmt`] and tagged with the table cell it came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crmdq_config::report::page;
use crmdq_config::{Lang, Pipeline, Target};
use jiff::civil::Date;

use crate::fmt::{self, Fmt};
use crate::labels::{Tr, fill, tr};
use crate::model::{Model, Row, RuleCost};
use crate::svg::{self, esc};

/// Counts a page may show as a KPI (each has a name in the label table).
pub const COUNT_KPIS: [&str; 11] = [
    "entries",
    "days",
    "tickets",
    "new_customers",
    "orders",
    "order_amount",
    "won_without_order",
    "checkins",
    "opportunities_advanced",
    "opportunities_lost",
    "opportunities_won",
];
/// Rates and means shown beside the scorecard metrics.
pub const RATE_KPIS: [&str; 3] = [
    "mean_satisfaction",
    "complaint_rate",
    "checkin_response_minutes",
];

/// A number from a score table, with where it came from: `data-t` (table), `data-k`
/// (row key), `data-c` (column), `data-f` (how it was rounded), so a reader of the page
/// can recompute it.
pub fn num(table: &str, key: &str, column: &str, v: Option<f64>, f: Fmt, missing: &str) -> String {
    let text = v.map_or_else(|| missing.to_string(), |v| f.write(v));
    format!(
        r#"<span class="n" data-t="{table}" data-k="{}" data-c="{column}" data-f="{}">{}</span>"#,
        esc(key),
        f.code(),
        esc(&text)
    )
}

/// The key of a `person_period` row on a page.
pub fn person_key(period: &str, person: &str, role: &str) -> String {
    format!("{period}|{person}|{role}")
}

pub fn team_key(period: &str, team: &str) -> String {
    format!("{period}|{team}")
}

/// `met / total` targets of a period row, each tagged with its cell.
fn targets_met(table: &str, key: &str, r: &Row) -> String {
    format!(
        "{} / {}",
        num(
            table,
            key,
            "targets_met",
            r.num("targets_met"),
            Fmt::Int,
            "0"
        ),
        num(
            table,
            key,
            "targets_total",
            r.num("targets_total"),
            Fmt::Int,
            "0"
        )
    )
}

/// Which KPIs a role's page shows: its scorecard, its targets, then what the role owns.
pub fn kpis_for(p: &Pipeline, role: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut add = |m: &str| {
        if !v.iter().any(|x| x == m) {
            v.push(m.to_string());
        }
    };
    let card = p.scorecard(role);
    for m in crmdq_config::SCORE_METRICS {
        if card.contains_key(m) {
            add(m);
        }
    }
    if let Some(t) = p.scoring.review.targets.get(role) {
        for m in t.keys() {
            add(m);
        }
    }
    let extras: &[&str] = match role {
        "sales_rep" => &[
            "checkin_response_rate",
            "checkin_response_quality",
            "own_entry_rate",
            "stage_success_rate",
            "new_customers",
            "orders",
            "won_without_order",
            "entries",
        ],
        "sales_assistant" => &["checkin_coverage", "entries"],
        "service_agent" => &["tickets", "mean_satisfaction", "complaint_rate", "entries"],
        "team" => &[
            "entries",
            "tickets",
            "new_customers",
            "orders",
            "order_amount",
            "checkin_response_rate",
            "checkin_coverage",
            "satisfaction_rate",
            "complaint_rate",
        ],
        _ => &["entries"],
    };
    for m in extras {
        add(m);
    }
    v
}

/// The KPIs of [`kpis_for`] a page shows: the scorecard's and the targets' always, the
/// others only where the subject had something to count in one of the trend's periods
/// (a sales team has no satisfaction to show).
fn shown(
    p: &Pipeline,
    role: &str,
    targets: Option<&BTreeMap<String, Target>>,
    rows: &[&Row],
) -> Vec<String> {
    let card = p.scorecard(role);
    kpis_for(p, role)
        .into_iter()
        .filter(|m| {
            card.contains_key(m)
                || targets.is_some_and(|t| t.contains_key(m))
                || rows.iter().any(|r| r.num(m).is_some())
        })
        .collect()
}

fn rows_of<'r>(rows: &'r [Row], key: &str, id: &str, role: Option<&str>) -> Vec<&'r Row> {
    rows.iter()
        .filter(|r| r.text(key) == Some(id) && role.is_none_or(|x| r.text("role") == Some(x)))
        .collect()
}

/// What every page has around its content.
pub struct Head {
    pub lang: &'static str,
    pub title: String,
    pub subtitle: String,
    /// (href, text) from the index to this page.
    pub crumbs: Vec<(String, String)>,
    pub generated: String,
}

/// A KPI against its target.
pub struct Tile {
    pub name: String,
    pub value: String,
    pub target: String,
    /// `met`, `missed` or `none` (no target).
    pub status: &'static str,
    pub status_text: &'static str,
    pub change: String,
    pub trend: String,
}

pub struct RankRow {
    pub href: String,
    pub name: String,
    pub role: String,
    pub rank: String,
    pub score: String,
    pub change: String,
    pub targets: String,
}

pub struct UnjudgedRow {
    pub href: String,
    pub name: String,
    pub role: String,
    pub why: String,
    pub score: String,
}

pub struct RuleRow {
    pub text: String,
    pub entries: String,
    pub gain: String,
    pub examples: String,
}

pub struct AssistRow {
    pub href: String,
    pub rep: String,
    pub entries: String,
    pub checkins: String,
    pub days: String,
}

pub struct RoleSection {
    pub role: String,
    pub team_href: String,
    pub team: String,
    pub score: Tile,
    pub rank: String,
    pub judged_note: String,
    pub tiles: Vec<Tile>,
    pub calendar: String,
    pub advice: Vec<String>,
    pub rules: Vec<RuleRow>,
    pub assists: Vec<AssistRow>,
    pub is_rep: bool,
    pub checkin_tiles: Vec<Tile>,
}

pub struct TeamCard {
    pub href: String,
    pub name: String,
    pub score: String,
    pub change: String,
    pub people: String,
    pub judged: String,
    pub entries: String,
    pub targets: String,
}

pub struct PersonLine {
    pub href: String,
    pub name: String,
    pub team: String,
    pub role: String,
    pub score: String,
    pub judged: &'static str,
}

pub struct AlertLine {
    pub dt: String,
    pub severity: String,
    pub rule: String,
    pub subject: String,
    pub state: String,
    pub value: String,
}

/// The parts of the report shared by its pages.
pub struct Ctx<'a> {
    pub p: &'a Pipeline,
    pub m: &'a Model,
    pub lang: Lang,
    pub tr: &'static Tr,
    /// Appended to every link between pages (`?lang=zh-CN` under `serve`).
    pub link_suffix: &'a str,
    /// person → (name, team) in this period, for links and names.
    pub names: BTreeMap<&'a str, &'a str>,
    /// The time the page is written at (freshness is measured against it).
    pub now: jiff::Timestamp,
}

impl<'a> Ctx<'a> {
    pub fn new(p: &'a Pipeline, m: &'a Model, lang: Lang, link_suffix: &'a str) -> Ctx<'a> {
        let mut names = BTreeMap::new();
        for r in &m.people {
            if let (Some(id), Some(n)) = (r.text("person_id"), r.text("name")) {
                names.insert(id, n);
            }
        }
        Ctx {
            p,
            m,
            lang,
            tr: tr(lang),
            link_suffix,
            names,
            now: m.now,
        }
    }

    pub fn href(&self, file: &str) -> String {
        format!("{file}{}", self.link_suffix)
    }

    fn period(&self) -> &str {
        &self.m.period.label
    }

    /// A person's display name: `Name (id)`, or the id.
    pub fn person_name(&self, id: &str) -> String {
        match self.names.get(id) {
            Some(n) if !n.is_empty() && *n != id => format!("{n} ({id})"),
            _ => id.to_string(),
        }
    }

    pub fn head(&self, title: String, crumbs: Vec<(String, String)>) -> Head {
        let m = self.m;
        let period = fmt::period(&m.period.label, self.lang);
        let subtitle = format!(
            "{} · {} – {}{}",
            period,
            fmt::date(m.period.start, self.lang),
            fmt::date(m.period.end, self.lang),
            m.team
                .as_ref()
                .map(|t| format!(" · {} {t}", self.tr.team))
                .unwrap_or_default()
        );
        let now = self
            .now
            .to_zoned(self.p.time_zone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        Head {
            lang: self.lang.tag(),
            title,
            subtitle,
            crumbs,
            generated: format!(
                "{} {now} · {} · {}",
                self.tr.generated,
                fill(self.tr.as_of, &[("v", &m.health.version.to_string())]),
                self.m.pipeline
            ),
        }
    }

    /// A tile of `metric` for one subject's rows over the trend's periods (the last row
    /// is this period's, if any).
    fn tile(
        &self,
        table: &str,
        key_of: &dyn Fn(&str) -> String,
        rows: &[&Row],
        metric: &str,
        target: Option<&Target>,
    ) -> Tile {
        let tr = self.tr;
        let f = Fmt::of(metric);
        let by_period: BTreeMap<&str, &Row> = rows
            .iter()
            .filter_map(|r| r.text("period").map(|p| (p, *r)))
            .collect();
        let cur = by_period.get(self.period()).and_then(|r| r.num(metric));
        let prev = self
            .m
            .periods
            .iter()
            .rev()
            .nth(1)
            .and_then(|p| by_period.get(p.as_str()))
            .and_then(|r| r.num(metric));
        let (status, status_text) = match target {
            None => ("none", tr.no_target),
            Some(t) if t.met(cur) => ("met", tr.met),
            Some(_) => ("missed", tr.missed),
        };
        let target_text = target.map_or_else(String::new, |t| {
            let mut parts = Vec::new();
            if let Some(v) = t.min {
                parts.push(fill(tr.target_at_least, &[("v", &f.write(v))]));
            }
            if let Some(v) = t.max {
                parts.push(fill(tr.target_at_most, &[("v", &f.write(v))]));
            }
            format!("{}: {}", tr.target, parts.join(", "))
        });
        let change = match (cur, prev) {
            (Some(c), Some(p)) => format!("{} {}", f.change().write(c - p), tr.vs_prev),
            _ => String::new(),
        };
        let points: Vec<svg::Point> = self
            .m
            .periods
            .iter()
            .map(|p| {
                let v = by_period.get(p.as_str()).and_then(|r| r.num(metric));
                svg::Point {
                    label: fmt::period(p, self.lang),
                    value: v,
                    text: v.map_or_else(|| "—".into(), |v| f.write(v)),
                }
            })
            .collect();
        let name = tr.kpi(metric).to_string();
        let trend = svg::trend(
            &points,
            target.and_then(|t| t.min.or(t.max)),
            f == Fmt::Pct,
            &format!(
                "{name}: {}",
                fill(tr.trend, &[("n", &self.m.periods.len().to_string())])
            ),
        );
        Tile {
            value: num(table, &key_of(self.period()), metric, cur, f, "—"),
            name,
            target: target_text,
            status,
            status_text,
            change,
            trend,
        }
    }

    fn score_tile(&self, table: &str, key: &str, row: Option<&Row>, rows: &[&Row]) -> Tile {
        let tr = self.tr;
        let mut t = self.tile(table, &|_| key.to_string(), rows, "score", None);
        t.name = tr.score.to_string();
        t.status = "score";
        t.status_text = "";
        t.change = match row.and_then(|r| r.num("score_change")) {
            Some(c) => format!(
                "{} {}",
                num(table, key, "score_change", Some(c), Fmt::S1, "—"),
                tr.vs_prev
            ),
            None => tr.no_prev.to_string(),
        };
        t
    }

    /// Why a row is not judged: too few entries, or a scorecard measure with too few
    /// cases (its denominator between 0 and `review.min_volume`).
    fn why_not_judged(&self, r: &Row, role: &str) -> String {
        let min = self.p.scoring.review.min_volume;
        let entries = r.int("entries").unwrap_or(0);
        if u64::try_from(entries).unwrap_or(0) < min {
            return fill(
                self.tr.needs_entries,
                &[
                    ("n", &fmt::decimal(entries as f64, 0)),
                    ("min", &min.to_string()),
                ],
            );
        }
        for metric in self.p.scorecard(role).keys() {
            let Some(den) = crmdq_score::sql::denominator(metric) else {
                continue;
            };
            let n: i64 = den.split('+').map(|c| r.int(c.trim()).unwrap_or(0)).sum();
            if n > 0 && u64::try_from(n).unwrap_or(0) < min {
                return fill(
                    self.tr.needs_cases,
                    &[
                        ("kpi", self.tr.kpi(metric)),
                        ("n", &n.to_string()),
                        ("min", &min.to_string()),
                    ],
                );
            }
        }
        String::new()
    }

    fn rule_rows(&self, rules: &[RuleCost], row: Option<&Row>, role: &str) -> Vec<RuleRow> {
        rules
            .iter()
            .map(|c| RuleRow {
                text: self.tr.rule(&c.rule),
                entries: fmt::decimal(c.entries as f64, 0),
                gain: row
                    .and_then(|r| rule_gain(self.p, r, role, c))
                    .map_or_else(String::new, |g| format!("+{}", fmt::decimal(g, 1))),
                examples: c.examples.join(", "),
            })
            .collect()
    }

    fn team_name(&self, team: Option<&str>) -> String {
        match team {
            None | Some("unassigned") => self.tr.no_team.to_string(),
            Some(t) => t.to_string(),
        }
    }
}

/// Points a person's score would gain with every measure of their scorecard at 100%,
/// per measure: `100 × weight × (1 − value) / Σ weights of the measures that apply`.
pub fn gains(p: &Pipeline, r: &Row, role: &str) -> Vec<(String, f64, f64)> {
    let card = p.scorecard(role);
    let total: f64 = card
        .iter()
        .filter(|(m, _)| r.num(m).is_some())
        .map(|(_, w)| *w)
        .sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let mut v: Vec<(String, f64, f64)> = card
        .iter()
        .filter_map(|(m, w)| {
            r.num(m)
                .map(|v| (m.clone(), v, 100.0 * w * (1.0 - v) / total))
        })
        .filter(|g| g.2 > 0.05)
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Points fixing every entry failing `rule` would add at most: the entries move its
/// rate (completeness for a missing field, timeliness for lateness, else validity) by
/// `n / entries`.
pub fn rule_gain(p: &Pipeline, r: &Row, role: &str, c: &RuleCost) -> Option<f64> {
    let metric = if c.rule.starts_with("missing.") {
        "completeness_rate"
    } else if c.rule == "late" {
        "timeliness_rate"
    } else {
        "validity_rate"
    };
    let card = p.scorecard(role);
    let w = card.get(metric)?;
    r.num(metric)?;
    let entries = r.num("entries").filter(|e| *e > 0.0)?;
    let total: f64 = card
        .iter()
        .filter(|(m, _)| r.num(m).is_some())
        .map(|(_, w)| *w)
        .sum();
    let share = (c.entries as f64).min(entries) / entries;
    Some(100.0 * w * share / total).filter(|g| *g > 0.0)
}

/// The team page.
pub struct TeamView {
    pub head: Head,
    pub team: String,
    pub score: Tile,
    pub tiles: Vec<Tile>,
    pub ranking: Vec<RankRow>,
    pub unjudged: Vec<UnjudgedRow>,
    pub rules: Vec<RuleRow>,
    pub rules_chart: String,
}

pub fn team_view(c: &Ctx<'_>, team: &str) -> TeamView {
    let tr = c.tr;
    let period = c.period();
    let rows = rows_of(&c.m.teams, "team_id", team, None);
    let row = rows
        .iter()
        .find(|r| r.text("period") == Some(period))
        .copied();
    let key = |p: &str| team_key(p, team);
    let targets = c.p.scoring.review.targets.get("team");
    let tiles = shown(c.p, "team", targets, &rows)
        .iter()
        .map(|m| {
            c.tile(
                "team_period",
                &key,
                &rows,
                m,
                targets.and_then(|t| t.get(m)),
            )
        })
        .collect();
    let score = c.score_tile("team_period", &key(period), row, &rows);
    let mut members: Vec<&Row> =
        c.m.people
            .iter()
            .filter(|r| r.text("period") == Some(period) && r.text("team_id") == Some(team))
            .collect();
    members.sort_by(|a, b| {
        (
            a.text("role"),
            a.int("rank_in_team").unwrap_or(i64::MAX),
            a.text("person_id"),
        )
            .cmp(&(
                b.text("role"),
                b.int("rank_in_team").unwrap_or(i64::MAX),
                b.text("person_id"),
            ))
    });
    let mut ranking = Vec::new();
    let mut unjudged = Vec::new();
    for r in members {
        let (Some(pid), Some(role)) = (r.text("person_id"), r.text("role")) else {
            continue;
        };
        let k = person_key(period, pid, role);
        let href = c.href(&page::person(pid));
        if r.flag("judged") {
            ranking.push(RankRow {
                href,
                name: c.person_name(pid),
                role: tr.role(role).to_string(),
                rank: num(
                    "person_period",
                    &k,
                    "rank_in_team",
                    r.num("rank_in_team"),
                    Fmt::Int,
                    "—",
                ),
                score: num("person_period", &k, "score", r.num("score"), Fmt::D1, "—"),
                change: match r.num("score_change") {
                    Some(v) => num("person_period", &k, "score_change", Some(v), Fmt::S1, "—"),
                    None => tr.new_person.to_string(),
                },
                targets: targets_met("person_period", &k, r),
            });
        } else {
            unjudged.push(UnjudgedRow {
                href,
                name: c.person_name(pid),
                role: tr.role(role).to_string(),
                why: c.why_not_judged(r, role),
                score: num("person_period", &k, "score", r.num("score"), Fmt::D1, "—"),
            });
        }
    }
    let rules = c.m.team_rules.get(team).map_or(&[][..], Vec::as_slice);
    let rules_chart = svg::bars(
        &rules
            .iter()
            .map(|r| (tr.rule(&r.rule), r.entries))
            .collect::<Vec<_>>(),
    );
    let name = c.team_name(Some(team));
    TeamView {
        head: c.head(
            format!("{} {name}", tr.team),
            vec![(c.href(page::INDEX), tr.all_teams.to_string())],
        ),
        team: name,
        score,
        tiles,
        ranking,
        unjudged,
        rules: c.rule_rows(rules, None, "team"),
        rules_chart,
    }
}

/// The person page.
pub struct PersonView {
    pub head: Head,
    pub sections: Vec<RoleSection>,
}

pub fn person_view(c: &Ctx<'_>, person: &str) -> PersonView {
    let tr = c.tr;
    let period = c.period();
    let mut sections = Vec::new();
    let current: Vec<&Row> =
        c.m.people
            .iter()
            .filter(|r| r.text("period") == Some(period) && r.text("person_id") == Some(person))
            .collect();
    for row in current {
        let role = row.text("role").unwrap_or("unknown");
        let rows = rows_of(&c.m.people, "person_id", person, Some(role));
        let key = |p: &str| person_key(p, person, role);
        let k = key(period);
        let targets = c.p.scoring.review.targets.get(role);
        let tiles = shown(c.p, role, targets, &rows)
            .iter()
            .map(|m| {
                c.tile(
                    "person_period",
                    &key,
                    &rows,
                    m,
                    targets.and_then(|t| t.get(m)),
                )
            })
            .collect();
        let judged = row.flag("judged");
        let rank = if judged {
            format!(
                "{} {} · {} {} / {}",
                tr.rank_in_team,
                num(
                    "person_period",
                    &k,
                    "rank_in_team",
                    row.num("rank_in_team"),
                    Fmt::Int,
                    "—"
                ),
                tr.targets,
                num(
                    "person_period",
                    &k,
                    "targets_met",
                    row.num("targets_met"),
                    Fmt::Int,
                    "0"
                ),
                num(
                    "person_period",
                    &k,
                    "targets_total",
                    row.num("targets_total"),
                    Fmt::Int,
                    "0"
                ),
            )
        } else {
            String::new()
        };
        let judged_note = if judged {
            String::new()
        } else {
            format!("{} {}", tr.not_judged_help, c.why_not_judged(row, role))
        };
        let rules_of =
            c.m.person_rules
                .get(&(person.to_string(), role.to_string()))
                .map_or(&[][..], Vec::as_slice);
        let mut advice: Vec<String> = Vec::new();
        match gains(c.p, row, role).first() {
            Some((m, v, g)) => advice.push(fill(
                tr.advice_first,
                &[
                    ("kpi", tr.kpi(m)),
                    ("value", &Fmt::of(m).write(*v)),
                    ("gain", &fmt::decimal(*g, 1)),
                ],
            )),
            None if row.num("score").is_some() => advice.push(tr.advice_none.to_string()),
            None => {}
        }
        if let Some((rule, g)) = rules_of
            .first()
            .and_then(|r| rule_gain(c.p, row, role, r).map(|g| (r, g)))
        {
            advice.push(fill(
                tr.advice_rule,
                &[
                    ("n", &fmt::decimal(rule.entries as f64, 0)),
                    ("rule", &tr.rule(&rule.rule)),
                    ("gain", &fmt::decimal(g, 1)),
                ],
            ));
        }
        let assists =
            c.m.assists
                .get(person)
                .map(|reps| {
                    reps.iter()
                        .map(|a| AssistRow {
                            href: c.href(&page::person(&a.rep)),
                            rep: c.person_name(&a.rep),
                            entries: fmt::decimal(a.entries as f64, 0),
                            checkins: fmt::decimal(a.checkins as f64, 0),
                            days: fmt::decimal(a.checkin_days as f64, 0),
                        })
                        .collect()
                })
                .unwrap_or_default();
        let is_rep = role == "sales_rep";
        let checkin_tiles = if is_rep {
            ["checkins", "checkin_response_minutes"]
                .iter()
                .map(|m| c.tile("person_period", &key, &rows, m, None))
                .collect()
        } else {
            Vec::new()
        };
        let team = row.text("team_id");
        sections.push(RoleSection {
            role: tr.role(role).to_string(),
            team_href: team.map(|t| c.href(&page::team(t))).unwrap_or_default(),
            team: c.team_name(team),
            score: c.score_tile("person_period", &k, Some(row), &rows),
            rank,
            judged_note,
            tiles,
            calendar: calendar(c, person, role),
            advice,
            rules: c.rule_rows(rules_of, Some(row), role),
            assists,
            is_rep,
            checkin_tiles,
        });
    }
    let mut crumbs = vec![(c.href(page::INDEX), tr.all_teams.to_string())];
    if let Some(t) =
        c.m.people
            .iter()
            .find(|r| r.text("period") == Some(period) && r.text("person_id") == Some(person))
            .and_then(|r| r.text("team_id"))
    {
        crumbs.push((
            c.href(&page::team(t)),
            format!("{} {}", tr.team, c.team_name(Some(t))),
        ));
    }
    PersonView {
        head: c.head(c.person_name(person), crumbs),
        sections,
    }
}

/// The period's days as weeks (Monday first), coloured by the day's worst entry rate.
fn calendar(c: &Ctx<'_>, person: &str, role: &str) -> String {
    let tr = c.tr;
    let (start, end) = (c.m.period.start, c.m.period.end);
    let days = c.m.days.get(&(person.to_string(), role.to_string()));
    let absent: &[Date] = c.m.absences.get(person).map_or(&[][..], Vec::as_slice);
    let first = start
        .checked_sub(jiff::Span::new().days(i64::from(start.weekday().to_monday_one_offset() - 1)))
        .unwrap_or(start);
    let mut weeks: Vec<[Option<svg::Day>; 7]> = Vec::new();
    let mut d = first;
    while d <= end && weeks.len() < 60 {
        let mut week: [Option<svg::Day>; 7] = Default::default();
        for slot in &mut week {
            if d >= start && d <= end {
                let counts = days.and_then(|m| m.get(&d)).filter(|c| c.entries > 0);
                let kind = match counts {
                    _ if absent.contains(&d) => svg::DayKind::Absent,
                    Some(n) => {
                        let worst =
                            n.complete.min(n.valid).min(n.on_time) as f64 / n.entries as f64;
                        if worst >= 1.0 {
                            svg::DayKind::Good
                        } else if worst >= 0.8 {
                            svg::DayKind::Some
                        } else {
                            svg::DayKind::Poor
                        }
                    }
                    None if !c.p.checks.calendar.is_working_day(d) => svg::DayKind::Off,
                    None => svg::DayKind::None,
                };
                let mut title = fmt::date(d, c.lang);
                if let Some(n) = counts {
                    let pct = |x: i64| Fmt::Pct.write(x as f64 / n.entries as f64);
                    let _ = write!(
                        title,
                        ": {} · {} {} · {} {} · {} {}",
                        fill(tr.day_entries, &[("n", &n.entries.to_string())]),
                        tr.completeness_rate,
                        pct(n.complete),
                        tr.validity_rate,
                        pct(n.valid),
                        tr.timeliness_rate,
                        pct(n.on_time)
                    );
                } else if kind == svg::DayKind::Absent {
                    let _ = write!(title, ": {}", tr.legend_absent);
                }
                *slot = Some(svg::Day {
                    day: d.day(),
                    kind,
                    title,
                    entries: counts.map(|n| n.entries),
                });
            }
            d = d.tomorrow().unwrap_or(d);
        }
        weeks.push(week);
    }
    svg::calendar(
        &weeks,
        std::array::from_fn(|i| tr.weekday(i8::try_from(i + 1).unwrap_or(1))),
    )
}

/// The index page.
pub struct IndexView {
    pub head: Head,
    pub teams: Vec<TeamCard>,
    pub people: Vec<PersonLine>,
    pub pipeline_href: String,
}

pub fn index_view(c: &Ctx<'_>) -> IndexView {
    let tr = c.tr;
    let period = c.period();
    let teams = c
        .m
        .teams
        .iter()
        .filter(|r| r.text("period") == Some(period))
        .filter_map(|r| {
            let t = r.text("team_id")?;
            let k = team_key(period, t);
            let members: Vec<&Row> =
                c.m.people
                    .iter()
                    .filter(|p| p.text("period") == Some(period) && p.text("team_id") == Some(t))
                    .collect();
            Some(TeamCard {
                href: c.href(&page::team(t)),
                name: c.team_name(Some(t)),
                score: num("team_period", &k, "score", r.num("score"), Fmt::D1, "—"),
                change: r
                    .num("score_change")
                    .map(|v| num("team_period", &k, "score_change", Some(v), Fmt::S1, "—"))
                    .unwrap_or_default(),
                people: num("team_period", &k, "people", r.num("people"), Fmt::Int, "0"),
                judged: members
                    .iter()
                    .filter(|p| p.flag("judged"))
                    .count()
                    .to_string(),
                entries: num(
                    "team_period",
                    &k,
                    "entries",
                    r.num("entries"),
                    Fmt::Int,
                    "0",
                ),
                targets: targets_met("team_period", &k, r),
            })
        })
        .collect();
    let people =
        c.m.people
            .iter()
            .filter(|r| r.text("period") == Some(period))
            .filter_map(|r| {
                let pid = r.text("person_id")?;
                let role = r.text("role").unwrap_or("unknown");
                Some(PersonLine {
                    href: c.href(&page::person(pid)),
                    name: c.person_name(pid),
                    team: c.team_name(r.text("team_id")),
                    role: tr.role(role).to_string(),
                    score: num(
                        "person_period",
                        &person_key(period, pid, role),
                        "score",
                        r.num("score"),
                        Fmt::D1,
                        "—",
                    ),
                    judged: if r.flag("judged") { tr.yes } else { tr.no },
                })
            })
            .collect();
    IndexView {
        head: c.head(tr.report_title.to_string(), Vec::new()),
        teams,
        people,
        pipeline_href: c.href(page::PIPELINE),
    }
}

/// The pipeline page.
pub struct PipelineView {
    pub head: Head,
    pub reasons: Vec<String>,
    pub by_reason: Vec<(String, String)>,
    pub by_reason_chart: String,
    /// (day, messages per reason in `reasons` order, total).
    pub by_day: Vec<(String, Vec<String>, String)>,
    pub freshness: String,
    pub last_ingest: String,
    pub positions: Vec<(String, String, String)>,
    pub alerts: Vec<AlertLine>,
    pub alerts_more: String,
}

pub fn pipeline_view(c: &Ctx<'_>) -> PipelineView {
    let tr = c.tr;
    let h = &c.m.health;
    let mut reasons: BTreeMap<&str, i64> = BTreeMap::new();
    let mut days: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for (dt, reason, n) in &h.dead_letters {
        *reasons.entry(reason).or_default() += n;
        *days.entry(dt).or_default().entry(reason).or_default() += n;
    }
    let mut by: Vec<(&str, i64)> = reasons.iter().map(|(r, n)| (*r, *n)).collect();
    by.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let names: Vec<String> = by.iter().map(|(r, _)| (*r).to_string()).collect();
    let by_day = days
        .iter()
        .map(|(dt, m)| {
            let day = dt
                .parse::<Date>()
                .map_or_else(|_| (*dt).to_string(), |d| fmt::date(d, c.lang));
            let cells = names
                .iter()
                .map(|r| {
                    m.get(r.as_str())
                        .map_or_else(String::new, |n| fmt::decimal(*n as f64, 0))
                })
                .collect();
            (day, cells, fmt::decimal(m.values().sum::<i64>() as f64, 0))
        })
        .collect();
    let now = c.now.as_microsecond();
    let ago = |us: Option<i64>| {
        us.map_or_else(
            || tr.unknown_value.to_string(),
            |us| fmt::duration((now - us) / 1_000_000, c.lang),
        )
    };
    PipelineView {
        head: c.head(
            tr.pipeline_health.to_string(),
            vec![(c.href(page::INDEX), tr.all_teams.to_string())],
        ),
        by_reason: by
            .iter()
            .map(|(r, n)| ((*r).to_string(), fmt::decimal(*n as f64, 0)))
            .collect(),
        by_reason_chart: svg::bars(
            &by.iter()
                .map(|(r, n)| ((*r).to_string(), *n))
                .collect::<Vec<_>>(),
        ),
        reasons: names,
        by_day,
        freshness: ago(h.newest_event_us),
        last_ingest: ago(h.newest_ingest_us),
        positions: h
            .positions
            .iter()
            .map(|(t, p, o)| (t.clone(), p.to_string(), fmt::decimal(*o as f64, 0)))
            .collect(),
        alerts: h
            .alerts
            .iter()
            .map(|r| AlertLine {
                dt: r.text("dt").unwrap_or_default().to_string(),
                severity: r.text("severity").unwrap_or_default().to_string(),
                rule: r.text("rule").unwrap_or_default().to_string(),
                subject: r.text("subject").unwrap_or_default().to_string(),
                state: r.text("state").unwrap_or_default().to_string(),
                value: r
                    .num("value")
                    .map_or_else(String::new, |v| fmt::decimal(v, 3)),
            })
            .collect(),
        alerts_more: if h.alerts_total > h.alerts.len() {
            fill(
                tr.alerts_more,
                &[("n", &(h.alerts_total - h.alerts.len()).to_string())],
            )
        } else {
            String::new()
        },
    }
}
