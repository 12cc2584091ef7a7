//! The HTML pages (askama templates in `templates/`, compiled into the binary and
//! HTML-escaped by default): every page self-contained — its CSS inline, its charts
//! inline SVG, no script, no font, no request of any kind.

use askama::Template;
use crmdq_config::Lang;
use crmdq_config::report::page;

use crate::ReportError;
use crate::labels::Tr;
use crate::view::{self, Ctx, Head, IndexView, PersonView, PipelineView, TeamView};

/// The stylesheet every page carries inline (print: A4 landscape).
pub const CSS: &str = include_str!("../templates/style.css");

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    head: Head,
    tr: &'a Tr,
    css: &'a str,
    v: IndexView,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage<'a> {
    head: Head,
    tr: &'a Tr,
    css: &'a str,
    v: TeamView,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage<'a> {
    head: Head,
    tr: &'a Tr,
    css: &'a str,
    v: PersonView,
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct PipelinePage<'a> {
    head: Head,
    tr: &'a Tr,
    css: &'a str,
    v: PipelineView,
}

fn render(t: &impl Template) -> Result<String, ReportError> {
    t.render()
        .map_err(|e| ReportError::Other(format!("rendering a page: {e}")))
}

/// The kinds of pages a report has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Index,
    Pipeline,
    Team(String),
    Person(String),
}

impl Page {
    pub fn file(&self) -> String {
        match self {
            Page::Index => page::INDEX.to_string(),
            Page::Pipeline => page::PIPELINE.to_string(),
            Page::Team(t) => page::team(t),
            Page::Person(p) => page::person(p),
        }
    }
}

/// Every page of the report: the index, the pipeline page, one per team of the period,
/// one per person.
pub fn pages(m: &crate::Model) -> Vec<Page> {
    let period = m.period.label.as_str();
    let mut v = vec![Page::Index, Page::Pipeline];
    let mut teams: Vec<&str> = m
        .teams
        .iter()
        .filter(|r| r.text("period") == Some(period))
        .filter_map(|r| r.text("team_id"))
        .collect();
    teams.dedup();
    v.extend(teams.into_iter().map(|t| Page::Team(t.to_string())));
    let mut people: Vec<&str> = m
        .people
        .iter()
        .filter(|r| r.text("period") == Some(period))
        .filter_map(|r| r.text("person_id"))
        .collect();
    people.dedup();
    v.extend(people.into_iter().map(|p| Page::Person(p.to_string())));
    v
}

/// One page in `lang`; `link_suffix` is appended to links between pages.
pub fn render_page(
    p: &crmdq_config::Pipeline,
    m: &crate::Model,
    lang: Lang,
    link_suffix: &str,
    now: Option<jiff::Timestamp>,
    which: &Page,
) -> Result<String, ReportError> {
    let mut c = Ctx::new(p, m, lang, link_suffix);
    if let Some(now) = now {
        c.now = now;
    }
    render_with(&c, which)
}

#[derive(Template)]
#[template(path = "periods.html")]
struct PeriodsPage<'a> {
    head: Head,
    tr: &'a Tr,
    css: &'a str,
    /// (kind name, [(href, name)]) per kind, newest first.
    kinds: Vec<(String, Vec<(String, String)>)>,
}

/// `serve`'s `/report/`: the scored periods of each kind, newest first, each linking to
/// its index.
pub async fn periods_page(
    ctx: &datafusion::prelude::SessionContext,
    lang: Lang,
    link_suffix: &str,
) -> Result<String, ReportError> {
    let sql = "SELECT period_kind, period FROM person_period GROUP BY period_kind, period \
               ORDER BY period_kind, MIN(period_start) DESC";
    let b = ctx
        .sql(sql)
        .await
        .map_err(|e| ReportError::query(sql, e))?
        .collect()
        .await
        .map_err(|e| ReportError::query(sql, e))?;
    let tr = crate::labels::tr(lang);
    let mut kinds: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for kind in ["month", "quarter", "week"] {
        let list: Vec<(String, String)> = crate::model::rows(&b)
            .iter()
            .filter(|r| r.text("period_kind") == Some(kind))
            .filter_map(|r| r.text("period"))
            .map(|p| (format!("{p}/{link_suffix}"), crate::fmt::period(p, lang)))
            .collect();
        if !list.is_empty() {
            let name = match kind {
                "month" => tr.kind_month,
                "quarter" => tr.kind_quarter,
                _ => tr.kind_week,
            };
            kinds.push((name.to_string(), list));
        }
    }
    render(&PeriodsPage {
        head: Head {
            lang: lang.tag(),
            title: tr.report_title.to_string(),
            subtitle: tr.periods_title.to_string(),
            crumbs: Vec::new(),
            generated: String::new(),
        },
        tr,
        css: CSS,
        kinds,
    })
}

pub(crate) fn render_with(c: &Ctx<'_>, which: &Page) -> Result<String, ReportError> {
    let tr = c.tr;
    match which {
        Page::Index => {
            let mut v = view::index_view(c);
            let head = std::mem::replace(&mut v.head, empty_head());
            render(&IndexPage {
                head,
                tr,
                css: CSS,
                v,
            })
        }
        Page::Team(t) => {
            let mut v = view::team_view(c, t);
            let head = std::mem::replace(&mut v.head, empty_head());
            render(&TeamPage {
                head,
                tr,
                css: CSS,
                v,
            })
        }
        Page::Person(id) => {
            let mut v = view::person_view(c, id);
            let head = std::mem::replace(&mut v.head, empty_head());
            render(&PersonPage {
                head,
                tr,
                css: CSS,
                v,
            })
        }
        Page::Pipeline => {
            let mut v = view::pipeline_view(c);
            let head = std::mem::replace(&mut v.head, empty_head());
            render(&PipelinePage {
                head,
                tr,
                css: CSS,
                v,
            })
        }
    }
}

fn empty_head() -> Head {
    Head {
        lang: "",
        title: String::new(),
        subtitle: String::new(),
        crumbs: Vec::new(),
        generated: String::new(),
    }
}
