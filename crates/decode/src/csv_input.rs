//! CSV rows → JSON-like objects, so that CSV goes through exactly the same decoding as
//! JSON. Empty cells are absent fields. The header names the fields.

use std::io::Read;

use crmdq_schema::DeadLetterReason;
use serde_json::{Map, Value};

/// One CSV row, ready for [`crate::Decoder::push_object`], or why it could not be read.
pub enum CsvRow {
    Object {
        obj: Map<String, Value>,
        raw: Vec<u8>,
        line: i64,
    },
    Broken {
        raw: Vec<u8>,
        reason: DeadLetterReason,
        detail: String,
        line: i64,
    },
}

/// Iterate the data rows of a CSV stream. `skip_through_line` skips rows whose (1-based)
/// line number is at or below it (resume after a committed position).
pub fn rows<R: Read>(reader: R, delimiter: u8, has_header: bool) -> impl Iterator<Item = CsvRow> {
    rows_with(reader, delimiter, b'"', has_header, false)
}

/// [`rows`] with a quote character, and optionally empty cells kept as empty strings
/// (a source mapping needs every column of the header).
pub fn rows_with<R: Read>(
    reader: R,
    delimiter: u8,
    quote: u8,
    has_header: bool,
    keep_empty: bool,
) -> impl Iterator<Item = CsvRow> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut header: Option<Vec<String>> = None;
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    std::iter::from_fn(move || {
        loop {
            let line = rdr.position().line() as i64;
            match rdr.read_byte_record(&mut record) {
                Ok(false) => return None,
                Err(e) => {
                    // The csv crate recovers at the next record; keep what we know.
                    let line = e.position().map_or(line, |p| p.line() as i64);
                    return Some(CsvRow::Broken {
                        raw: Vec::new(),
                        reason: DeadLetterReason::InvalidJson,
                        detail: format!("unreadable CSV row: {e}"),
                        line,
                    });
                }
                Ok(true) => {}
            }
            let line = record.position().map_or(line, |p| p.line() as i64);
            let raw = join(&record, delimiter);
            if first {
                first = false;
                if has_header {
                    header = Some(
                        record
                            .iter()
                            .map(|f| {
                                String::from_utf8_lossy(f)
                                    .trim()
                                    .trim_start_matches('\u{feff}')
                                    .to_string()
                            })
                            .collect(),
                    );
                    continue;
                }
                header = Some((1..=record.len()).map(|i| format!("column_{i}")).collect());
            }
            let names = header.as_ref().expect("header set on first row");
            if record.len() != names.len() {
                return Some(CsvRow::Broken {
                    raw,
                    reason: DeadLetterReason::InvalidJson,
                    detail: format!("row has {} cells, header has {}", record.len(), names.len()),
                    line,
                });
            }
            let mut obj = Map::new();
            for (name, cell) in names.iter().zip(record.iter()) {
                let Ok(text) = std::str::from_utf8(cell) else {
                    return Some(CsvRow::Broken {
                        raw,
                        reason: DeadLetterReason::InvalidUtf8,
                        detail: format!("cell `{name}` is not UTF-8"),
                        line,
                    });
                };
                if keep_empty || !text.is_empty() {
                    obj.insert(name.clone(), Value::String(text.to_string()));
                }
            }
            return Some(CsvRow::Object { obj, raw, line });
        }
    })
}

fn join(r: &csv::ByteRecord, delimiter: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in r.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        out.extend_from_slice(f);
    }
    out
}
