//! The scalar UDFs the compiled checks are made of. They are registered in the check
//! session under their public names, so user checks can call them too:
//! `phone_valid(text)`, `cn_id_valid(text)`, `cn_id_age(text, timestamp)`.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use unicode_normalization::UnicodeNormalization;

use crate::cnid;
use crate::phone::{self, PhoneRules};

fn utf8_arg(args: &ScalarFunctionArgs, i: usize) -> Result<ArrayRef> {
    let a = args.args[i].clone().into_array(args.number_rows)?;
    match a.data_type() {
        DataType::Utf8 => Ok(a),
        DataType::Null => Ok(arrow::array::new_null_array(&DataType::Utf8, a.len())),
        _ => Ok(arrow::compute::cast(&a, &DataType::Utf8)?),
    }
}

/// Placeholder normal form: NFKC, trim, lower case.
pub fn normalize_value(v: &str) -> Cow<'_, str> {
    if v.is_ascii() {
        let t = v.trim();
        if t.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(t.to_ascii_lowercase())
        } else {
            Cow::Borrowed(t)
        }
    } else {
        Cow::Owned(v.nfkc().collect::<String>().trim().to_lowercase())
    }
}

/// A text → boolean test, made into a scalar UDF by [`TextUdf`].
pub trait TextTest: std::fmt::Debug + PartialEq + Eq + Hash + Send + Sync + 'static {
    fn name(&self) -> &str;
    /// The verdict for a present value.
    fn test(&self, value: &str) -> bool;
    /// The verdict for NULL (None: NULL).
    fn on_null(&self) -> Option<bool>;
}

/// A one-argument UDF over text returning boolean, vectorised over the batch.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextUdf<T: TextTest> {
    signature: Signature,
    test: T,
}

impl<T: TextTest> TextUdf<T> {
    pub fn new(test: T) -> Self {
        TextUdf {
            signature: Signature::any(1, Volatility::Immutable),
            test,
        }
    }
}

impl<T: TextTest> ScalarUDFImpl for TextUdf<T> {
    fn name(&self) -> &str {
        self.test.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = utf8_arg(&args, 0)?;
        let out: BooleanArray = a
            .as_string::<i32>()
            .iter()
            .map(|v| match v {
                Some(v) => Some(self.test.test(v)),
                None => self.test.on_null(),
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `crmdq_missing_<field>(value)`: true when the value is null or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Missing {
    name: String,
    placeholders: Arc<BTreeSet<String>>,
    /// The longest placeholder in bytes: a longer ASCII value (whose normal form is as long
    /// as its trimmed self) cannot be one, and is not normalised at all.
    longest: usize,
    /// Phone placeholder rules (normalisation, repeated and consecutive digits).
    phone: Option<PhonePlaceholders>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhonePlaceholders {
    pub country_code: String,
    pub all_same: bool,
    pub consecutive: bool,
}

impl Missing {
    pub fn new(
        name: String,
        placeholders: Arc<BTreeSet<String>>,
        phone: Option<PhonePlaceholders>,
    ) -> Self {
        let longest = placeholders.iter().map(String::len).max().unwrap_or(0);
        Missing {
            name,
            placeholders,
            longest,
            phone,
        }
    }
}

impl TextTest for Missing {
    fn name(&self) -> &str {
        &self.name
    }

    fn test(&self, v: &str) -> bool {
        let may_be_listed = !v.is_ascii() || v.trim().len() <= self.longest;
        if may_be_listed && self.placeholders.contains(normalize_value(v).as_ref()) {
            return true;
        }
        if let Some(p) = &self.phone {
            let normalized = phone::normalize(v);
            let digits = phone::national_digits(&normalized, &p.country_code);
            return self.placeholders.contains(digits)
                || (p.all_same && phone::all_same_digits(digits))
                || (p.consecutive && phone::consecutive_digits(digits));
        }
        false
    }

    fn on_null(&self) -> Option<bool> {
        Some(true)
    }
}

/// `phone_valid(text)`: valid for the pipeline's region; null in, null out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneValid(pub PhoneRules);

impl TextTest for PhoneValid {
    fn name(&self) -> &'static str {
        "phone_valid"
    }
    fn test(&self, v: &str) -> bool {
        self.0.is_valid(v)
    }
    fn on_null(&self) -> Option<bool> {
        None
    }
}

/// `cn_id_valid(text)`: GB 11643 format, checksum and birth date; null in, null out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CnIdValid;

impl TextTest for CnIdValid {
    fn name(&self) -> &'static str {
        "cn_id_valid"
    }
    fn test(&self, v: &str) -> bool {
        cnid::validate(&normalize_value(v)).is_ok()
    }
    fn on_null(&self) -> Option<bool> {
        None
    }
}

/// `cn_id_age(text, event_time)`: completed years from the number's birth date to the
/// local date of event_time; null when the number is invalid.
#[derive(Debug, Clone)]
pub struct CnIdAge {
    signature: Signature,
    tz_name: String,
    tz: TimeZone,
}

impl PartialEq for CnIdAge {
    fn eq(&self, o: &Self) -> bool {
        self.tz_name == o.tz_name
    }
}
impl Eq for CnIdAge {}
impl Hash for CnIdAge {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.tz_name.hash(h);
    }
}

impl CnIdAge {
    pub fn new(tz_name: String, tz: TimeZone) -> Self {
        CnIdAge {
            signature: Signature::any(2, Volatility::Immutable),
            tz_name,
            tz,
        }
    }
}

impl ScalarUDFImpl for CnIdAge {
    fn name(&self) -> &'static str {
        "cn_id_age"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ids = utf8_arg(&args, 0)?;
        let ts = args.args[1].clone().into_array(args.number_rows)?;
        let DataType::Timestamp(..) = ts.data_type() else {
            return exec_err!(
                "cn_id_age: second argument must be a timestamp, got {}",
                ts.data_type()
            );
        };
        let ts = arrow::compute::cast(
            &ts,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
        )?;
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let out: Int64Array = ids
            .as_string::<i32>()
            .iter()
            .zip(ts.iter())
            .map(|(id, t)| {
                let birth = cnid::validate(&normalize_value(id?)).ok()?;
                let on = Timestamp::from_microsecond(t?)
                    .ok()?
                    .to_zoned(self.tz.clone())
                    .date();
                Some(cnid::age_on(birth, on))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod fast_path_tests {
    use proptest::prelude::*;

    use super::*;

    /// The normal forms as they were before the borrowed fast paths: what these must equal.
    fn value_reference(v: &str) -> String {
        if v.is_ascii() {
            v.trim().to_ascii_lowercase()
        } else {
            v.nfkc().collect::<String>().trim().to_lowercase()
        }
    }

    fn phone_reference(s: &str) -> String {
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

    fn digits_reference(n: &str, cc: &str) -> String {
        let (plus, zeros) = (format!("+{cc}"), format!("00{cc}"));
        n.strip_prefix(&plus)
            .or_else(|| n.strip_prefix(&zeros))
            .unwrap_or(n)
            .to_string()
    }

    const SAMPLES: &[&str] = &[
        "",
        " ",
        "N/A",
        " unknown ",
        "unknown",
        "Manager",
        "\tx\n",
        "13800138000",
        " 13800138000",
        "+86 138-0013-8000",
        "0086(138)00138000",
        "+8613800138000",
        "008613800138000",
        "+1 415 555 0100",
        "１３８００１３８０００",
        "无",
        " 不详 ",
        "\u{a0}138\u{a0}0013\u{a0}8000",
        "138.0013.8000\n",
    ];

    #[test]
    fn fast_paths_agree_with_the_reference_forms() {
        for s in SAMPLES {
            assert_eq!(normalize_value(s), value_reference(s), "{s:?}");
            assert_eq!(phone::normalize(s), phone_reference(s), "{s:?}");
            let n = phone_reference(s);
            assert_eq!(phone::national_digits(&n, "86"), digits_reference(&n, "86"));
        }
    }

    /// The length filter never hides a listed value.
    #[test]
    fn long_values_are_not_listed_and_listed_ones_are_found() {
        let listed: BTreeSet<String> = ["n/a", "unknown", "不详", "13800000000"]
            .into_iter()
            .map(String::from)
            .collect();
        let m = Missing::new("m".into(), Arc::new(listed), None);
        for v in ["N/A", "  Unknown\t", "不详", " 不详 ", "13800000000"] {
            assert!(m.test(v), "{v:?} is a placeholder");
        }
        for v in ["unknown person", "Manager", "1380000000012", "n/a."] {
            assert!(!m.test(v), "{v:?} is not");
        }
    }

    proptest! {
        #[test]
        fn normal_forms_match_the_reference(s in "[ \\t\\-.()+0-9a-zA-Z\u{a0}\u{ff10}-\u{ff19}无]{0,20}") {
            prop_assert_eq!(normalize_value(&s).into_owned(), value_reference(&s));
            prop_assert_eq!(phone::normalize(&s).into_owned(), phone_reference(&s));
            let n = phone_reference(&s);
            prop_assert_eq!(phone::national_digits(&n, "86").to_string(), digits_reference(&n, "86"));
        }
    }
}
