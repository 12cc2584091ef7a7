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

/// `raw` normalised, if it is digits after at most leading `+`s (anything else is not a
/// valid phone number).
fn dialable(raw: &str) -> Option<Cow<'_, str>> {
    let n = normalize(raw);
    let digits = n.trim_start_matches('+');
    (!n.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(n)
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
    shortcut: Shortcut,
}

/// When the `phonenumber` parser would leave a number as it is, and how to see it
/// without running the parser (a grammar, a country-code search and three regular
/// expressions per number, ~2 µs): the region's international (IDD) prefix, national
/// prefix for parsing (carrier codes) and national prefix, and whether a shorter
/// country code hides inside `+<country code>`. See [`PhoneRules::national_as_is`].
#[derive(Debug, Clone)]
struct Shortcut {
    /// The region's IDD and national-prefix-for-parsing patterns, anchored at the start.
    idd: Option<regex::Regex>,
    carrier: Option<regex::Regex>,
    national_prefix: Option<String>,
    /// `+<country code>…` is this region's code for the parser (no shorter code is a
    /// prefix of it).
    plus_code_is_ours: bool,
}

impl Shortcut {
    fn new(meta: &phonenumber::metadata::Metadata) -> Option<Shortcut> {
        let anchored = |p: &str| regex::Regex::new(&format!("^(?x:{p})")).ok();
        let cc = meta.country_code().to_string();
        Some(Shortcut {
            idd: match meta.international_prefix() {
                Some(r) => Some(anchored(r.as_str())?),
                None => None,
            },
            carrier: match meta.national_prefix_for_parsing() {
                Some(r) => Some(anchored(r.as_str())?),
                None => None,
            },
            national_prefix: meta.national_prefix().map(str::to_string),
            plus_code_is_ours: (1..cc.len()).all(|len| {
                cc[..len]
                    .parse::<u16>()
                    .is_ok_and(|c| phonenumber::metadata::DATABASE.by_code(&c).is_none())
            }),
        })
    }
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
            shortcut: Shortcut::new(meta)?,
        })
    }

    /// The national significant number of `n` (normalised: digits, maybe a leading `+`)
    /// when the parser would take it as it is — the common case, decided without the
    /// parser; `None` when the parser must decide. Following `phonenumber::parse` with
    /// this region: digits only, 3–17 of them, no leading `0`, not starting with the
    /// country code, the IDD, the national prefix or a carrier code (the parser strips
    /// each of those at the start, and a national number with a leading zero prints
    /// differently); or `+` and the country code before such digits. Equal to the
    /// parser's answer on every input the tests throw at both.
    fn national_as_is<'a>(&self, n: &'a str) -> Option<&'a str> {
        let sc = &self.shortcut;
        let starts = |r: &Option<regex::Regex>, s: &str| r.as_ref().is_some_and(|r| r.is_match(s));
        // The IDD is looked for after a `+` too (`+0086…`).
        let after_plus = n.strip_prefix('+');
        if starts(&sc.idd, after_plus.unwrap_or(n)) {
            return None;
        }
        let national = match after_plus {
            Some(rest) if sc.plus_code_is_ours => rest.strip_prefix(self.country_code.as_str())?,
            Some(_) => return None,
            None if n.starts_with(self.country_code.as_str()) => return None,
            None => n,
        };
        let b = national.as_bytes();
        if !(3..=17).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if starts(&sc.carrier, national)
            || sc
                .national_prefix
                .as_deref()
                .is_some_and(|p| national.starts_with(p))
        {
            return None;
        }
        Some(national)
    }

    /// Valid for the region per libphonenumber, after normalisation. Numbers of another
    /// country (`+1 …`) are invalid here.
    pub fn is_valid(&self, raw: &str) -> bool {
        let Some(n) = dialable(raw) else {
            return false;
        };
        match self.national_as_is(&n) {
            Some(national) => self.national_is_valid(national),
            None => self.parsed_is_valid(n),
        }
    }

    /// A national significant number fully matches the general descriptor and one
    /// number type, with a length that type allows.
    fn national_is_valid(&self, national: &str) -> bool {
        self.general.matches(national) && self.types.iter().any(|t| t.matches(national))
    }

    /// [`PhoneRules::is_valid`] through the `phonenumber` parser (`n` normalised).
    fn parsed_is_valid(&self, n: Cow<'_, str>) -> bool {
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
        self.national_is_valid(&p.national().to_string())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What [`PhoneRules::is_valid`] answers, always through the parser.
    fn parsed(rules: &PhoneRules, raw: &str) -> bool {
        dialable(raw).is_some_and(|n| rules.parsed_is_valid(n))
    }

    const REGIONS: [&str; 8] = ["CN", "US", "GB", "DE", "JP", "IT", "RU", "HK"];
    static RULES: std::sync::LazyLock<Vec<PhoneRules>> = std::sync::LazyLock::new(|| {
        REGIONS
            .iter()
            .map(|r| PhoneRules::new(r).unwrap())
            .collect()
    });

    #[test]
    fn the_shortcut_answers_as_the_parser_on_the_usual_shapes() {
        let cn = PhoneRules::new("CN").unwrap();
        let mut shortcut = 0;
        for raw in [
            "13800138000",
            "138 0013 8000",
            "+86 138-0013-8000",
            "+8613800138000",
            "8613800138000",
            "008613800138000",
            "1380013800",
            "138001380001",
            "12800138000",
            "17900138000",
            "17951138001380",
            "1259013800138000",
            "02161234567",
            "2161234567",
            "+1 415 555 0134",
            "+852 6123 4567",
            "4001234567",
            "95588",
        ] {
            shortcut += usize::from(cn.national_as_is(&normalize(raw)).is_some());
            assert_eq!(cn.is_valid(raw), parsed(&cn, raw), "{raw}");
        }
        assert!(
            shortcut >= 8,
            "the shortcut took {shortcut} of the usual shapes"
        );
        assert!(cn.is_valid("+86 138-0013-8000") && !cn.is_valid("1380013800"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Digits after the prefixes the parser treats specially (country codes, IDDs,
        /// national and carrier prefixes), in several regions: the shortcut agrees.
        #[test]
        fn the_shortcut_equals_the_parser(
            region in 0..REGIONS.len(),
            prefix in prop::sample::select(vec![
                "", "+", "+86", "86", "0086", "00", "0", "1", "11", "12", "179", "17951", "125",
                "+1", "1", "001", "011", "+44", "44", "+49", "49", "+81", "81", "+39", "39", "+7",
                "7", "8", "810", "+852", "852", "+0086", "+00",
            ]),
            digits in "[0-9]{0,15}",
        ) {
            let rules = &RULES[region];
            let raw = format!("{prefix}{digits}");
            prop_assert_eq!(rules.is_valid(&raw), parsed(rules, &raw), "{} in {}", raw, REGIONS[region]);
        }
    }
}
