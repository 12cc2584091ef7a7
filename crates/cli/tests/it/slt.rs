//! The scoring SQL's expected results as data: `tests/fixtures/*.slt` files in
//! sqllogictest's shape (`query <types> [rowsort]`, SQL, `----`, rows), each query run
//! through `crmdq sql` over the fixture warehouse and compared row by row.

use std::path::Path;

use crate::common;

/// One `query` block.
struct Query {
    line: usize,
    sql: String,
    rowsort: bool,
    expected: Vec<String>,
}

fn parse(text: &str) -> Vec<Query> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, l)) = lines.next() {
        let Some(header) = l.strip_prefix("query ") else {
            assert!(
                l.trim().is_empty() || l.starts_with('#'),
                "line {}: expected `query`, found `{l}`",
                i + 1
            );
            continue;
        };
        let rowsort = header.split_whitespace().any(|w| w == "rowsort");
        let mut sql = Vec::new();
        for (_, l) in lines.by_ref() {
            if l == "----" {
                break;
            }
            sql.push(l);
        }
        let mut expected = Vec::new();
        while let Some((_, l)) = lines.next_if(|(_, l)| !l.trim().is_empty()) {
            expected.push(l.to_string());
        }
        out.push(Query {
            line: i + 1,
            sql: sql.join("\n"),
            rowsort,
            expected,
        });
    }
    out
}

/// One CSV line's cells (RFC 4180 quoting); an empty unquoted cell is NULL (the CSV
/// writer writes nulls as nothing).
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) => (quoted, was_quoted) = (true, true),
            (',', false) => {
                out.push(null_if_empty(std::mem::take(&mut cur), was_quoted));
                was_quoted = false;
            }
            (c, _) => cur.push(c),
        }
    }
    out.push(null_if_empty(cur, was_quoted));
    out
}

fn null_if_empty(v: String, quoted: bool) -> String {
    if v.is_empty() && !quoted {
        "NULL".to_string()
    } else {
        v
    }
}

/// The rows of `sql` over warehouse `w`, each as its cells joined by single spaces.
fn rows(w: &Path, sql: &str) -> Vec<String> {
    let out = common::run(&[
        "sql",
        "--warehouse",
        w.to_str().unwrap(),
        "--format",
        "csv",
        sql,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().skip(1).map(|l| cells(l).join(" ")).collect()
}

fn run_file(w: &Path, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let queries = parse(&text);
    assert!(!queries.is_empty(), "{}: no queries", file.display());
    for q in queries {
        let mut got = rows(w, &q.sql);
        let mut want = q.expected.clone();
        if q.rowsort {
            got.sort();
            want.sort();
        }
        assert_eq!(got, want, "{}:{}: {}", file.display(), q.line, q.sql);
    }
}

#[test]
fn scoring_results_match_the_slt_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    common::ingest(&w, &[&common::fixtures().join("small.ndjson")]);
    common::score(&w);
    run_file(&w, &common::fixtures().join("small.slt"));
}

#[test]
fn review_kpis_and_periods_match_the_slt_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let f = common::fixtures().join("review");
    let now = "2027-01-06T12:00:00+08:00";
    common::ingest_and_score(
        now,
        &f.join("pipeline.yaml"),
        &w,
        &f.join("review.ndjson"),
        &[],
    );
    run_file(&w, &f.join("review.slt"));
}

#[test]
fn the_slt_parser_reads_blocks_and_sorts_only_when_asked() {
    let q = parse(
        "# c\nquery TI rowsort\nSELECT 1,\n 2\n----\nb 2\na 1\n\nquery I\nSELECT 3\n----\n3\n",
    );
    assert_eq!(q.len(), 2);
    assert!(q[0].rowsort && !q[1].rowsort);
    assert_eq!(q[0].sql, "SELECT 1,\n 2");
    assert_eq!(q[0].expected, ["b 2", "a 1"]);
    assert_eq!((q[1].line, q[1].expected.len()), (9, 1));
    assert_eq!(
        cells(r#"a,,"x, ""y""",1.5"#),
        ["a", "NULL", "x, \"y\"", "1.5"]
    );
}
