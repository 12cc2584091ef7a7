//! Phone normalisation, placeholder patterns and validity (libphonenumber metadata via
//! the `phonenumber` crate).

use phonenumber::country::Id;
use unicode_normalization::UnicodeNormalization;

/// NFKC, then drop spaces, hyphens, dots and parentheses. `+86`/`0086` prefixes are kept
/// for the parser; [`national_digits`] strips them for placeholder comparison.
pub fn normalize(s: &str) -> String {
    let t: String = if s.is_ascii() {
        s.to_string()
    } else {
        s.nfkc().collect()
    };
    t.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}' | '\t'))
        .collect::<String>()
        .trim()
        .to_string()
}

/// The national significant digits for placeholder comparison: normalised, country
/// prefix of `region` removed (`+86 138-0013-8000` → `13800138000`).
pub fn national_digits(normalized: &str, country_code: &str) -> String {
    let s = normalized;
    let plus = format!("+{country_code}");
    let zeros = format!("00{country_code}");
    let rest = s
        .strip_prefix(&plus)
        .or_else(|| s.strip_prefix(&zeros))
        .unwrap_or(s);
    rest.to_string()
}

/// All one digit (`11111111111`), at least 5 long.
pub fn all_same_digits(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() >= 5 && b.iter().all(u8::is_ascii_digit) && b.iter().all(|c| *c == b[0])
}

/// One run of consecutive digits, ascending or descending, wrapping 9→0
/// (`12345678901`, `98765432109`), at least 7 long.
pub fn consecutive_digits(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() < 7 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let step = |x: u8, y: u8| (10 + y - b'0' - (x - b'0')) % 10;
    let s = step(b[0], b[1]);
    (s == 1 || s == 9) && b.windows(2).all(|w| step(w[0], w[1]) == s)
}

/// A phone validator for one region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneRules {
    pub region: String,
    region_id: Id,
    pub country_code: String,
}

impl PhoneRules {
    pub fn new(region: &str) -> Option<PhoneRules> {
        let region_id: Id = region.parse().ok()?;
        let meta = phonenumber::metadata::DATABASE.by_id(region_id.as_ref())?;
        Some(PhoneRules {
            region: region.to_string(),
            region_id,
            country_code: meta.country_code().to_string(),
        })
    }

    /// Valid for the region per libphonenumber, after normalisation. Numbers of another
    /// country (`+1 …`) are judged by their own plan but must belong to this region.
    pub fn is_valid(&self, raw: &str) -> bool {
        let n = normalize(raw);
        if n.is_empty()
            || !n
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let n = match n.strip_prefix("00") {
            Some(rest) if !rest.is_empty() => format!("+{rest}"),
            _ => n,
        };
        match phonenumber::parse(Some(self.region_id), &n) {
            Ok(p) => {
                p.code().value().to_string() == self.country_code
                    && phonenumber::is_valid(&p)
                    && self.extra_rules(&p)
            }
            Err(_) => false,
        }
    }

    /// Where the `phonenumber` crate is more lenient than libphonenumber itself: its
    /// `is_valid` accepts national numbers longer than any the region's plan allows.
    fn extra_rules(&self, p: &phonenumber::PhoneNumber) -> bool {
        let Some(meta) = phonenumber::metadata::DATABASE.by_id(self.region_id.as_ref()) else {
            return true;
        };
        let national = p.national().to_string();
        let len = national.len() as u16;
        let general = meta.descriptors().general();
        general.possible_length().is_empty() || general.possible_length().contains(&len)
    }
}
