//! Phone normalisation, placeholder patterns and validity (libphonenumber metadata via
//! the `phonenumber` crate).

use std::borrow::Cow;

use phonenumber::country::Id;
use unicode_normalization::UnicodeNormalization;

/// NFKC, then drop spaces, hyphens, dots and parentheses. `+86`/`0086` prefixes are kept
/// for the parser; [`national_digits`] strips them for placeholder comparison.
pub fn normalize(s: &str) -> Cow<'_, str> {
    // The usual case, plain ASCII digits without separators, is returned as it is.
    if s.is_ascii() && !s.contains(is_separator) && s.trim() == s {
        return Cow::Borrowed(s);
    }
    let t: Cow<'_, str> = if s.is_ascii() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfkc().collect())
    };
    let kept: String = t.chars().filter(|c| !is_separator(*c)).collect();
    Cow::Owned(kept.trim().to_string())
}

/// The characters [`normalize`] drops (after NFKC).
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}' | '\t')
}

/// The national significant digits for placeholder comparison: normalised, country
/// prefix of `region` removed (`+86 138-0013-8000` → `13800138000`).
pub fn national_digits<'a>(normalized: &'a str, country_code: &str) -> &'a str {
    let s = normalized;
    s.strip_prefix('+')
        .and_then(|r| r.strip_prefix(country_code))
        .or_else(|| {
            s.strip_prefix("00")
                .and_then(|r| r.strip_prefix(country_code))
        })
        .unwrap_or(s)
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

/// One number type of the region's plan: its full-match pattern and possible lengths.
#[derive(Debug, Clone)]
struct TypeDesc {
    pattern: regex::Regex,
    lengths: Vec<u16>,
}

impl TypeDesc {
    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.pattern.is_match(national)
    }
}

/// A phone validator for one region.
///
/// Parsing (national prefix, `+86`, `00` international prefix) is the `phonenumber`
/// crate's; validity is decided here the way libphonenumber's `isValidNumberForRegion`
/// does: the national significant number must *fully* match the general descriptor and
/// one number type's pattern, with a length that type allows. (The crate's own
/// `is_valid` anchors its patterns at the start only, so over-long numbers pass it:
/// 12-digit 800 numbers, Beijing numbers with extra digits.)
#[derive(Debug, Clone)]
pub struct PhoneRules {
    pub region: String,
    region_id: Id,
    pub country_code: String,
    general: TypeDesc,
    types: Vec<TypeDesc>,
}

impl PartialEq for PhoneRules {
    fn eq(&self, o: &Self) -> bool {
        self.region == o.region
    }
}
impl Eq for PhoneRules {}
impl std::hash::Hash for PhoneRules {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.region.hash(h);
    }
}

fn type_desc(d: &phonenumber::metadata::Descriptor, fallback: &[u16]) -> Option<TypeDesc> {
    // The metadata patterns are laid out with whitespace, as in libphonenumber's XML.
    let pattern = regex::Regex::new(&format!("^(?x:{})$", d.national_number().as_str())).ok()?;
    let lengths = if d.possible_length().is_empty() {
        fallback.to_vec()
    } else {
        d.possible_length().to_vec()
    };
    Some(TypeDesc { pattern, lengths })
}

impl PhoneRules {
    pub fn new(region: &str) -> Option<PhoneRules> {
        let region_id: Id = region.parse().ok()?;
        let meta = phonenumber::metadata::DATABASE.by_id(region_id.as_ref())?;
        let d = meta.descriptors();
        let general_lengths = d.general().possible_length().to_vec();
        let general = type_desc(d.general(), &[])?;
        let types = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|t| type_desc(t, &general_lengths))
        .collect();
        Some(PhoneRules {
            region: region.to_string(),
            region_id,
            country_code: meta.country_code().to_string(),
            general,
            types,
        })
    }

    /// Valid for the region per libphonenumber, after normalisation. Numbers of another
    /// country (`+1 …`) are invalid here.
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
            Some(rest) if !rest.is_empty() => Cow::Owned(format!("+{rest}")),
            _ => n,
        };
        let Ok(p) = phonenumber::parse(Some(self.region_id), &n) else {
            return false;
        };
        if p.code().value().to_string() != self.country_code {
            return false;
        }
        let national = p.national().to_string();
        self.general.matches(&national) && self.types.iter().any(|t| t.matches(&national))
    }
}
