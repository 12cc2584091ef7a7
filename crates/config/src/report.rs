//! `report`: the scorecards people read (`crmdq report`, `serve`'s `/report/`): their
//! default language, and the address alert messages link to.
//!
//! The page names live here, below both the alerts (which link to them) and the report
//! crate (which writes them), so a link and the page it names cannot drift apart.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};

/// The languages the scorecards are written in (every label in both: `crmdq-report`'s
/// label table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// `en` or `zh-CN` (also accepted: `zh`, `zh-cn`, `zh_CN`).
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "en" | "en-us" | "en-gb" => Some(Lang::En),
            "zh-cn" | "zh" | "zh-hans" | "zh-hans-cn" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The BCP 47 tag (`<html lang=…>`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// `en` (default) or `zh-CN`; `crmdq report --lang` overrides it.
    pub lang: Option<String>,
    /// Where `crmdq serve` is reached (e.g. `https://crm.example.com/crmdq`): alert
    /// messages then end with a link to the subject's page under `/report/`.
    pub base_url: Option<String>,
}

/// The validated `report` section.
#[derive(Debug, Clone, Default)]
pub struct ReportConfig {
    pub lang: Lang,
    /// Without a trailing `/`.
    pub base_url: Option<String>,
}

pub(crate) fn validate(raw: RawReport, cx: &Ctx<'_>) -> Result<ReportConfig, ConfigError> {
    let lang = match raw.lang.as_deref() {
        None => Lang::En,
        Some(s) => Lang::parse(s).ok_or_else(|| {
            cx.err(
                "report.lang",
                format!("unknown language `{s}`: use `en` or `zh-CN`"),
            )
        })?,
    };
    let base_url = match raw.base_url {
        None => None,
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Some(u.trim_end_matches('/').to_string())
        }
        Some(u) => {
            return Err(cx.err(
                "report.base_url",
                format!("`{u}` is not an http:// or https:// address"),
            ));
        }
    };
    Ok(ReportConfig { lang, base_url })
}

/// A file-name-safe form of an id: ASCII letters, digits, `.`, `-` and `_` stay; every
/// other byte becomes `~XX` (hex), so distinct ids give distinct names.
pub fn slug(id: &str) -> String {
    let mut s = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "~{b:02X}");
        }
    }
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

/// The report's pages within one period's folder (relative links, so the folder works
/// from a `file://` URL and under `serve`'s `/report/<period>/`).
pub mod page {
    use super::slug;

    pub const INDEX: &str = "index.html";
    pub const PIPELINE: &str = "pipeline.html";

    pub fn team(team_id: &str) -> String {
        format!("team-{}.html", slug(team_id))
    }

    /// A person's page (a person with two roles in a period has one section per role).
    pub fn person(person_id: &str) -> String {
        format!("person-{}.html", slug(person_id))
    }
}

/// The month (`YYYY-MM`) a business date `YYYY-MM-DD` belongs to: the period alert
/// messages link to.
pub fn month_of(dt: &str) -> Option<&str> {
    dt.get(..7).filter(|m| m.as_bytes().get(4) == Some(&b'-'))
}

/// `base/report/<period>/<page>`.
pub fn url(base: &str, period: &str, page: &str) -> String {
    format!("{base}/report/{period}/{page}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_and_distinct() {
        assert_eq!(slug("li.wei"), "li.wei");
        assert_eq!(slug("a/b"), "a~2Fb");
        assert_eq!(slug("张"), "~E5~BC~A0");
        assert_eq!(slug(".."), "_..");
        assert_ne!(slug("a b"), slug("a_b"));
        assert_ne!(slug("a~20b"), slug("a b"));
        assert_eq!(page::person("li.wei"), "person-li.wei.html");
    }

    #[test]
    fn languages_parse() {
        assert_eq!(Lang::parse("zh-CN"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("zh_cn"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("EN"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(month_of("2026-11-28"), Some("2026-11"));
        assert_eq!(month_of("x"), None);
    }
}
