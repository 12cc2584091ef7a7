//! `crmdq report` and `/report/` (issue: scorecards people would rather look at): the
//! demo's month rendered as pages in English and Chinese and as a workbook, each number
//! checked against `person_period`/`team_period`, the pages checked to need no network,
//! rendered by a real browser (headless Chromium) and the workbook read back by openpyxl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::{self, NOW, http_get, run, serve, sql};

/// The demo (fixed clock) with its month's report in English (written by the demo), in
/// Chinese, and as a workbook.
struct Demo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    month: String,
    en: PathBuf,
    zh: PathBuf,
    xlsx: PathBuf,
}

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("demo");
        let out = run(&["--now", NOW, "demo", "--dir", root.to_str().unwrap()]);
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Report of "))
            .unwrap_or_else(|| panic!("the demo prints its report's path:\n{text}"));
        let month = line["Report of ".len()..][..7].to_string();
        let en = PathBuf::from(line.rsplit_once(": ").unwrap().1)
            .parent()
            .unwrap()
            .to_path_buf();
        assert!(en.join("index.html").is_file());
        let p = root.join("pipeline.yaml");
        let zh = root.join("zh");
        report(&p, &month, &zh, &["--lang", "zh-CN"]);
        let x = root.join("x");
        report(&p, &month, &x, &["--format", "xlsx"]);
        let xlsx = x.join(format!("crmdq-{month}.xlsx"));
        assert!(xlsx.is_file());
        Demo {
            _dir: dir,
            root,
            month,
            en,
            zh,
            xlsx,
        }
    })
}

/// `crmdq report` of `month` into `out`, with `extra` arguments.
fn report(pipeline: &Path, month: &str, out: &Path, extra: &[&str]) {
    let (p, o) = (pipeline.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec![
        "--now",
        NOW,
        "report",
        "--pipeline",
        p,
        "--period",
        month,
        "--out",
        o,
    ];
    args.extend(extra);
    run(&args);
}

impl Demo {
    fn warehouse(&self) -> PathBuf {
        self.root.join("warehouse")
    }
    fn pipeline(&self) -> PathBuf {
        self.root.join("pipeline.yaml")
    }
    fn pages(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        v.sort();
        v
    }
}

/// A number shown on a page with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shown {
    table: String,
    key: String,
    column: String,
    format: String,
    text: String,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> String {
    let pat = format!("{name}=\"");
    let i = tag.find(&pat).unwrap_or_else(|| panic!("{name} in {tag}")) + pat.len();
    unescape(&tag[i..][..tag[i..].find('"').unwrap()])
}

/// Every `<span class="n" …>` of a page (as written, or as Chromium serialised the DOM).
fn shown(html: &str) -> Vec<Shown> {
    html.split("<span class=\"n\" ")
        .skip(1)
        .map(|part| {
            let (tag, rest) = part.split_once('>').unwrap();
            let text = unescape(&rest[..rest.find("</span>").unwrap()]);
            Shown {
                table: attr(tag, "data-t"),
                key: attr(tag, "data-k"),
                column: attr(tag, "data-c"),
                format: attr(tag, "data-f"),
                text,
            }
        })
        .collect()
}

fn grouped(s: &str) -> String {
    let (sign, s) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = s.split_once('.').map_or((s, None), |(a, b)| (a, Some(b)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let neg = sign == "-" && s.chars().any(|c| c.is_ascii_digit() && c != '0');
    format!(
        "{}{out}{}",
        if neg { "-" } else { "" },
        frac.map(|f| format!(".{f}")).unwrap_or_default()
    )
}

/// The table's value as the page must write it.
fn expected(format: &str, v: Option<f64>) -> String {
    let Some(v) = v else { return "—".into() };
    let signed = |s: String| {
        if s.starts_with('-') || s.chars().all(|c| !c.is_ascii_digit() || c == '0') {
            s
        } else {
            format!("+{s}")
        }
    };
    match format {
        "pct" => format!("{}%", grouped(&format!("{:.1}", v * 100.0))),
        "int" => grouped(&format!("{v:.0}")),
        "d1" => grouped(&format!("{v:.1}")),
        "d2" => grouped(&format!("{v:.2}")),
        "s1" => signed(grouped(&format!("{v:.1}"))),
        other => panic!("unknown format {other}"),
    }
}

/// The period tables of the month, by the key the pages use.
fn tables(d: &Demo) -> BTreeMap<(String, String), Value> {
    let w = d.warehouse();
    let mut m = BTreeMap::new();
    for r in sql(
        &w,
        "SELECT * FROM person_period WHERE period_kind = 'month'",
    ) {
        let k = format!(
            "{}|{}|{}",
            r["period"].as_str().unwrap(),
            r["person_id"].as_str().unwrap(),
            r["role"].as_str().unwrap()
        );
        m.insert(("person_period".to_string(), k), r);
    }
    for r in sql(&w, "SELECT * FROM team_period WHERE period_kind = 'month'") {
        let k = format!(
            "{}|{}",
            r["period"].as_str().unwrap(),
            r["team_id"].as_str().unwrap()
        );
        m.insert(("team_period".to_string(), k), r);
    }
    m
}

/// Each shown number equals its table cell after the rounding it declares; returns how
/// many were checked.
fn check_numbers(page: &str, html: &str, t: &BTreeMap<(String, String), Value>) -> usize {
    let all = shown(html);
    for s in &all {
        let row = t
            .get(&(s.table.clone(), s.key.clone()))
            .unwrap_or_else(|| panic!("{page}: no {} row {}", s.table, s.key));
        let v = row.get(&s.column).and_then(Value::as_f64);
        assert_eq!(
            s.text,
            expected(&s.format, v),
            "{page}: {}.{} of {} is {:?} in the table",
            s.table,
            s.column,
            s.key,
            row.get(&s.column)
        );
    }
    all.len()
}

/// No reference outside the page: no script, stylesheet, image, frame or font to fetch,
/// and every link another page of the report.
fn assert_self_contained(page: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "@import",
        "url(",
        "src=",
        "srcset=",
        "@font-face",
    ] {
        assert!(!lower.contains(bad), "{page} contains {bad}");
    }
    for part in html.split("href=\"").skip(1) {
        let href = &part[..part.find('"').unwrap()];
        let file = href.split('?').next().unwrap();
        assert!(
            !href.contains("://")
                && !href.starts_with("//")
                && Path::new(file).extension().is_some_and(|e| e == "html"),
            "{page}: link {href} is not another page of the report"
        );
    }
}

#[test]
fn every_number_on_every_page_is_the_tables_in_both_languages() {
    let d = demo();
    let t = tables(d);
    let en_pages = Demo::pages(&d.en);
    let zh_pages = Demo::pages(&d.zh);
    // The index, the pipeline page, each team's and each person's page.
    let teams = sql(
        &d.warehouse(),
        &format!(
            "SELECT DISTINCT team_id FROM team_period WHERE period = '{}'",
            d.month
        ),
    );
    let people = sql(
        &d.warehouse(),
        &format!(
            "SELECT DISTINCT person_id FROM person_period WHERE period = '{}' AND person_id <> 'unassigned'",
            d.month
        ),
    );
    assert_eq!(
        en_pages.len(),
        2 + teams.len() + people.len(),
        "{en_pages:?}"
    );
    assert_eq!(
        en_pages
            .iter()
            .map(|p| p.file_name().unwrap())
            .collect::<Vec<_>>(),
        zh_pages
            .iter()
            .map(|p| p.file_name().unwrap())
            .collect::<Vec<_>>()
    );
    let mut checked = 0;
    for (en, zh) in en_pages.iter().zip(&zh_pages) {
        let name = en.file_name().unwrap().to_string_lossy().to_string();
        let (e, z) = (
            std::fs::read_to_string(en).unwrap(),
            std::fs::read_to_string(zh).unwrap(),
        );
        assert_self_contained(&name, &e);
        assert_self_contained(&name, &z);
        checked += check_numbers(&name, &e, &t);
        check_numbers(&name, &z, &t);
        // The same numbers in both languages.
        let (mut a, mut b) = (shown(&e), shown(&z));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: numbers differ between en and zh-CN");
        assert!(e.contains("<html lang=\"en\">") && z.contains("<html lang=\"zh-CN\">"));
        assert!(e.len() < 500 * 1024, "{name}: {} bytes", e.len());
        if name.starts_with("team-") || name.starts_with("person-") {
            assert!(
                !shown(&e).is_empty(),
                "{name} shows no number from the tables"
            );
        }
    }
    assert!(checked > 100, "only {checked} numbers checked");
    // Written in the page's language.
    let zi = std::fs::read_to_string(d.zh.join("index.html")).unwrap();
    assert!(zi.contains("数据质量考评") && !zi.contains("Data quality review"));
    let ei = std::fs::read_to_string(d.en.join("index.html")).unwrap();
    assert!(ei.contains("Data quality review") && !ei.contains("数据质量考评"));
    // The assistant's page lists the reps she enters for; the rep on leave has absent
    // days greyed in the calendar; an unjudged person is told why.
    let cj = std::fs::read_to_string(d.en.join("person-chen.jing.html")).unwrap();
    assert!(
        cj.contains("Reps you enter for") && cj.contains("wang.fang") && cj.contains("zhao.lei")
    );
    let zl = std::fs::read_to_string(d.en.join("person-zhao.lei.html")).unwrap();
    assert_eq!(
        zl.matches("class=\"day absent\"").count(),
        3,
        "zhao.lei's three days of leave"
    );
    let north = std::fs::read_to_string(d.en.join("team-north.html")).unwrap();
    assert!(
        north.contains("entries, needs 20"),
        "an unjudged person and why"
    );
    assert!(cj.contains("Bringing it to 100% would raise the score by up to"));
}

#[test]
fn a_team_report_and_bad_arguments() {
    let d = demo();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("north");
    let p = d.pipeline();
    report(&p, &d.month, &out, &["--team", "north"]);
    let pages = Demo::pages(&out);
    assert!(pages.iter().any(|p| p.ends_with("team-north.html")));
    assert!(!pages.iter().any(|p| p.ends_with("team-east.html")));
    assert!(pages.iter().any(|p| p.ends_with("person-chen.jing.html")));
    assert!(
        !pages.iter().any(|p| p.ends_with("person-li.wei.html")),
        "li.wei is in east"
    );
    for (args, says) in [
        (vec!["--period", "2026-13x"], "expected a week"),
        (vec!["--period", "2019-01"], "no scores for this month"),
        (
            vec!["--period", &d.month, "--team", "nobody"],
            "--team `nobody`",
        ),
        (vec!["--period", &d.month, "--lang", "fr"], "--lang `fr`"),
    ] {
        let o = common::bin()
            .args([
                "--now",
                NOW,
                "report",
                "--pipeline",
                p.to_str().unwrap(),
                "--out",
            ])
            .arg(dir.path().join("bad"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `report.base_url` makes each alert message link to its subject's page, which exists.
#[test]
fn alert_messages_link_to_the_report() {
    let d = demo();
    let text = std::fs::read_to_string(d.pipeline()).unwrap();
    let p = d.root.join("pipeline-linked.yaml");
    let linked = text.replace(
        "report:\n  lang: en\n",
        "report:\n  lang: en\n  base_url: https://crm.example.com/crmdq/\n",
    );
    assert_ne!(linked, text, "the shipped pipeline has a report section");
    std::fs::write(&p, linked).unwrap();
    let out = run(&[
        "--now",
        NOW,
        "alerts",
        "--pipeline",
        p.to_str().unwrap(),
        "--dry-run",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("Report: https://crm.example.com/crmdq/report/{}/", d.month);
    let links: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .collect();
    assert!(!links.is_empty(), "{text}");
    for page in links {
        assert!(
            d.en.join(page).is_file(),
            "{page} is not a page of the report"
        );
    }
}

/// `/report/` of `serve`: the same pages, behind the SQL credentials.
#[test]
fn serve_renders_the_same_pages_behind_the_credentials() {
    let d = demo();
    let srv = serve(
        &d.warehouse(),
        &d.pipeline(),
        &[("CRMDQ_SQL_USER", "hr"), ("CRMDQ_SQL_PASSWORD", "s3cret")],
    );
    let auth = Some(("hr", "s3cret"));
    let m = &d.month;
    assert_eq!(http_get(srv.http, &format!("/report/{m}/"), None).0, 401);
    assert_eq!(
        http_get(srv.http, &format!("/report/{m}/"), Some(("hr", "wrong"))).0,
        401
    );
    let (code, list) = http_get(srv.http, "/report/", auth);
    assert_eq!(code, 200);
    assert!(list.contains(&format!("href=\"{m}/\"")), "{list}");
    let (code, _) = http_get(srv.http, &format!("/report/?period={m}&team=north"), auth);
    assert_eq!(
        code, 303,
        "period and team as query parameters redirect to the page"
    );
    for file in [
        "index.html",
        "team-north.html",
        "person-chen.jing.html",
        "pipeline.html",
    ] {
        let (code, live) = http_get(srv.http, &format!("/report/{m}/{file}"), auth);
        assert_eq!(code, 200, "{file}");
        let written = std::fs::read_to_string(d.en.join(file)).unwrap();
        assert_eq!(
            shown(&live),
            shown(&written),
            "{file}: live and written pages differ"
        );
        assert_self_contained(file, &live);
    }
    let (code, zh) = http_get(
        srv.http,
        &format!("/report/{m}/team-north.html?lang=zh-CN"),
        auth,
    );
    assert_eq!(code, 200);
    assert!(
        zh.contains("lang=\"zh-CN\"") && zh.contains("index.html?lang=zh-CN"),
        "links keep the language"
    );
    assert_eq!(
        http_get(srv.http, &format!("/report/{m}/person-nobody.html"), auth).0,
        404
    );
    assert_eq!(http_get(srv.http, "/report/2019-01/", auth).0, 404);
}

/// The workbook read back by an independent reader (Python openpyxl): its cells are the
/// tables', with real number formats, a frozen header and an autofilter on every sheet.
#[test]
#[ignore = "needs Python openpyxl; .ci/run installs it and runs the ignored tests"]
fn the_workbook_reads_back_in_openpyxl() {
    common::need_python("openpyxl");
    let d = demo();
    let script = r#"
import json, sys, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
about = [list(r) for r in wb["About"].iter_rows(min_row=2, values_only=True)]
out = {"sheets": wb.sheetnames, "about": about, "sheets_meta": {}}
for ws in wb.worksheets:
    out["sheets_meta"][ws.title] = {"freeze": ws.freeze_panes, "filter": ws.auto_filter.ref}
def rows(ws):
    head = [c.value for c in ws[1]]
    res = []
    for r in ws.iter_rows(min_row=2):
        res.append({head[i]: [c.value.isoformat()[:10] if isinstance(c.value, datetime.datetime) else c.value, c.number_format] for i, c in enumerate(r)})
    return res
out["teams"] = rows(wb.worksheets[0])
out["people"] = rows(wb.worksheets[1])
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&d.xlsx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let header_of: BTreeMap<(String, String), String> = v["about"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r[1].as_str().unwrap().to_string(),
                    r[2].as_str().unwrap().to_string(),
                ),
                r[0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, meta) in v["sheets_meta"].as_object().unwrap() {
        assert!(
            meta["freeze"].as_str().is_some(),
            "{name}: no frozen header"
        );
        assert!(
            meta["filter"]
                .as_str()
                .is_some_and(|f| f.starts_with("A1:")),
            "{name}: no autofilter"
        );
    }
    let w = d.warehouse();
    let mut compared = 0;
    for (table, sheet, key_cols) in [
        ("person_period", "people", vec!["person_id", "role"]),
        ("team_period", "teams", vec!["team_id"]),
    ] {
        let rows = sql(
            &w,
            &format!(
                "SELECT * FROM {table} WHERE period_kind = 'month' AND period = '{}' AND {} <> 'unassigned'",
                d.month, key_cols[0]
            ),
        );
        let cells = v[sheet].as_array().unwrap();
        assert_eq!(cells.len(), rows.len(), "{sheet}: one row per {table} row");
        for r in &rows {
            let cell_row = cells
                .iter()
                .find(|c| {
                    key_cols
                        .iter()
                        .all(|k| c[&header_of[&(table.to_string(), (*k).to_string())]][0] == r[*k])
                })
                .unwrap_or_else(|| panic!("{sheet}: no row for {r}"));
            for ((t, column), header) in &header_of {
                if t != table {
                    continue;
                }
                let [value, format] = cell_row[header].as_array().unwrap().as_slice() else {
                    panic!()
                };
                let want = r.get(column).cloned().unwrap_or(Value::Null);
                match (&want, value) {
                    (Value::Number(a), Value::Number(b)) => {
                        assert!(
                            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9,
                            "{sheet} {column}: {a} vs {b}"
                        );
                    }
                    (a, b) => assert_eq!(a, b, "{sheet} {column}"),
                }
                compared += 1;
                let f = format.as_str().unwrap();
                if column.ends_with("_rate") {
                    assert_eq!(f, "0.0%", "{column} is a percentage");
                } else if column == "period_start" {
                    assert_eq!(f, "yyyy-mm-dd");
                } else if column == "entries" {
                    assert_eq!(f, "#,##0");
                }
            }
        }
    }
    assert!(compared > 500, "{compared} cells compared");
    assert!(
        v["sheets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Team north")
    );
}

fn chromium_args(user_dir: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .chain([format!("--user-data-dir={}", user_dir.display())])
    .collect()
}

/// Chromium with networking off: in a network namespace of its own (`unshare -n`, as root
/// in CI) and with every host name unresolvable.
fn chromium(user_dir: &Path, extra: &[String], url: &str) -> std::process::Output {
    let offline = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut c = if offline {
        let mut c = Command::new("unshare");
        c.args(["-n", "chromium"]);
        c
    } else {
        Command::new("chromium")
    };
    c.args(chromium_args(user_dir)).args(extra).arg(url);
    let o = c.output().expect("run chromium");
    assert!(
        o.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Requests a page made, from Chromium's net log: browser-internal ones (update checks)
/// carry no initiator; a page's own requests do.
fn page_requests(netlog: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(netlog).unwrap()).unwrap();
    let start = v["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_i64()
        .unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect()
}

/// Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what
/// Chromium writes): chunks, inflate (flate2), and the five scanline filters.
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    use std::io::Read as _;
    let data = std::fs::read(path).unwrap();
    assert_eq!(
        &data[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: not a PNG",
        path.display()
    );
    let (mut at, mut idat) = (8, Vec::new());
    let (mut w, mut h, mut channels) = (0u32, 0u32, 0usize);
    while at + 8 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind = &data[at + 4..at + 8];
        let body = &data[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(body[0..4].try_into().unwrap());
                h = u32::from_be_bytes(body[4..8].try_into().unwrap());
                assert_eq!((body[8], body[12]), (8, 0), "8-bit, not interlaced");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(body),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w as usize * channels;
    let mut prev = vec![0u8; stride];
    let mut px = Vec::with_capacity((w * h) as usize);
    for row in raw.chunks(stride + 1).take(h as usize) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let (b, c) = (prev[i], if i >= channels { prev[i - channels] } else { 0 });
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => u8::midpoint(a, b),
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            cur[i] = line[i].wrapping_add(pred);
        }
        px.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (w, h, px)
}

/// A PNG of the expected size with something drawn on it.
fn assert_not_blank(png_path: &Path, width: u32, height: u32) {
    let (w, h, px) = decode_png(png_path);
    assert_eq!((w, h), (width, height), "{}", png_path.display());
    assert_eq!(px.len(), (w * h) as usize);
    let mut counts: BTreeMap<[u8; 3], usize> = BTreeMap::new();
    for p in &px {
        *counts.entry(*p).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let most = counts.values().max().copied().unwrap_or(0);
    assert!(
        counts.len() > 50,
        "{}: {} colours",
        png_path.display(),
        counts.len()
    );
    assert!(
        most * 100 < total * 90,
        "{}: {}% one colour",
        png_path.display(),
        most * 100 / total
    );
}

#[test]
#[ignore = "needs Chromium (Debian's chromium); .ci/run installs it and runs the ignored tests"]
fn every_page_in_headless_chromium() {
    common::need("chromium", Command::new("chromium").arg("--version"));
    let d = demo();
    let t = tables(d);
    let work = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // The detector finds a page's request: a control page that loads an image.
    let control = work.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><img src=\"http://127.0.0.1:9/x.png\">",
    )
    .unwrap();
    let log = work.path().join("control.json");
    chromium(
        &work.path().join("u0"),
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", log.display()),
        ],
        &format!("file://{}", control.display()),
    );
    assert!(
        page_requests(&log)
            .iter()
            .any(|u| u.starts_with("http://127.0.0.1:9/")),
        "the net-log check must see a page's own request"
    );

    // Every page in both languages: the DOM Chromium built shows the tables' numbers, and
    // the page asked the network for nothing.
    let mut seen = BTreeSet::new();
    for dir in [&d.en, &d.zh] {
        for page in Demo::pages(dir) {
            let name = page.file_name().unwrap().to_string_lossy().to_string();
            let log = work.path().join(format!("{name}.json"));
            let o = chromium(
                &work.path().join("u1"),
                &[
                    "--dump-dom".into(),
                    format!("--log-net-log={}", log.display()),
                ],
                &format!("file://{}", page.display()),
            );
            let dom = String::from_utf8(o.stdout).unwrap();
            assert!(dom.contains("</main>"), "{name}: not rendered");
            let n = check_numbers(&name, &dom, &t);
            let written = std::fs::read_to_string(&page).unwrap();
            assert_eq!(n, shown(&written).len(), "{name}: numbers lost in the DOM");
            let asked = page_requests(&log);
            assert!(asked.is_empty(), "{name} made requests: {asked:?}");
            seen.insert(name);
        }
    }
    assert!(seen.len() >= 10);

    // A screenshot of each page kind, drawn, at the window's size.
    let (w, h) = (1280, 1500);
    for (kind, page) in [
        ("index", d.en.join("index.html")),
        ("team", d.en.join("team-north.html")),
        ("person", d.en.join("person-chen.jing.html")),
        ("person-absent", d.en.join("person-zhao.lei.html")),
        ("pipeline", d.en.join("pipeline.html")),
        ("team-zh", d.zh.join("team-north.html")),
    ] {
        let png_path = shots.join(format!("report-{kind}.png"));
        let _ = std::fs::remove_file(&png_path);
        chromium(
            &work.path().join("u2"),
            &[
                format!("--window-size={w},{h}"),
                format!("--screenshot={}", png_path.display()),
            ],
            &format!("file://{}", page.display()),
        );
        assert_not_blank(&png_path, w, h);
        // `CRMDQ_UPDATE_DOCS=1` refreshes the README's screenshots from this run.
        if std::env::var_os("CRMDQ_UPDATE_DOCS").is_some() && (kind == "team" || kind == "person") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
            std::fs::copy(&png_path, docs.join(format!("report-{kind}.png"))).unwrap();
        }
    }
}
