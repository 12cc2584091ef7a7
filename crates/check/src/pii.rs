//! PII policy applied to the checked batch just before it is written: `keep`, `mask`
//! (`138****5678`) or `hash` (HMAC-SHA256, hex). Checks have already run on raw values.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use crmdq_config::PiiMode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Mask all but the first 3 and last 4 characters; short values keep only their first
/// character (names: `张*`, `J***`).
pub fn mask(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    if n >= 8 {
        let mut s: String = chars[..3].iter().collect();
        s.extend(std::iter::repeat_n('*', n - 7));
        s.extend(&chars[n - 4..]);
        s
    } else if n == 0 {
        String::new()
    } else {
        let mut s = chars[0].to_string();
        s.extend(std::iter::repeat_n('*', n - 1));
        s
    }
}

pub fn hash(key: &[u8], v: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(v.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Apply `mode` to a Utf8 column.
pub fn apply(col: &ArrayRef, mode: PiiMode, key: Option<&[u8]>) -> ArrayRef {
    if mode == PiiMode::Keep {
        return col.clone();
    }
    let s = col.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(s.len(), s.len() * 16);
    for v in s {
        match v {
            None => b.append_null(),
            Some(v) => match mode {
                PiiMode::Mask => b.append_value(mask(v)),
                PiiMode::Hash => b.append_value(hash(key.unwrap_or_default(), v)),
                PiiMode::Keep => b.append_value(v),
            },
        }
    }
    Arc::new(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("13812345678"), "138****5678");
        assert_eq!(mask("11010519491231002X"), "110***********002X");
        assert_eq!(mask("张三"), "张*");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn hashes_are_keyed_and_stable() {
        let a = hash(b"k1", "13812345678");
        assert_eq!(a, hash(b"k1", "13812345678"));
        assert_ne!(a, hash(b"k2", "13812345678"));
        assert_eq!(a.len(), 64);
    }
}
