//! Where a key is in the pipeline file, as the YAML parser sees it.
//!
//! `serde_yaml_ng` keeps no spans in its values, but every error raised while it visits a
//! scalar carries that scalar's line. [`line_of`] walks the document with a visitor that
//! follows a dotted key path (`alerts.rules[2].metric`) and raises an error on the key it
//! looks for; the error's location is the key's exact line. Errors found after
//! deserialisation (cross-field rules such as `age_min > age_max`) use it, so every
//! message names the line the parser saw, never a text search's guess.
//!
//! [`fields_of`] asks a raw section type for its keys the same way: an unknown key makes
//! `deny_unknown_fields` list every key it accepts. The key reference test uses it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

const FOUND: &str = "\u{0}crmdq-span-probe";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|s| !s.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Seg::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// The 1-based line of `key` (dotted, with `[i]` for sequence items) in YAML `text`; where
/// the whole path is absent, the line of its longest present prefix. `None` when not even
/// the first segment is there.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let mut path = segments(key);
    while !path.is_empty() {
        if let Some(line) = probe(text, &path) {
            return Some(line);
        }
        path.pop();
    }
    None
}

fn probe(text: &str, path: &[Seg]) -> Option<usize> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe { path }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

struct Probe<'a> {
    path: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key: fails (at the key's mark) when it is the one looked for and the last.
struct Key<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v == self.want {
            true if self.last => Err(E::custom(FOUND)),
            hit => Ok(hit),
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.visit_str("~")
    }
}

/// A sequence item looked for: fails at its mark.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! fail_on_scalars {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<(), E> { Err(E::custom(FOUND)) })*
    };
}

impl<'de> Visitor<'de> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }
    fail_on_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML document")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let want = match self.path.first() {
            Some(Seg::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        loop {
            let hit = match want {
                Some(want) => map.next_key_seed(Key {
                    want,
                    last: self.path.len() == 1,
                })?,
                None => map.next_key::<IgnoredAny>()?.map(|_| false),
            };
            match hit {
                None => return Ok(()),
                Some(true) => map.next_value_seed(Probe {
                    path: &self.path[1..],
                })?,
                Some(false) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let want = match self.path.first() {
            Some(Seg::Index(i)) => Some(*i),
            _ => None,
        };
        let mut i = 0usize;
        loop {
            let more = if want == Some(i) && self.path.len() == 1 {
                seq.next_element_seed(Here)?.is_some()
            } else if want == Some(i) {
                seq.next_element_seed(Probe {
                    path: &self.path[1..],
                })?
                .is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// The keys a raw section type accepts, in declaration order (from the error
/// `deny_unknown_fields` gives for a key it does not know).
pub fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let probe = "crmdq_unknown_key_probe: 0\n";
    let Err(e) = serde_yaml_ng::from_str::<T>(probe) else {
        return Vec::new();
    };
    let msg = e.to_string();
    let Some((_, list)) = msg.split_once("expected ") else {
        return Vec::new();
    };
    // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`".
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_are_found_on_their_lines() {
        let t = "a:\n  b: 1\nc:\n  d:\n    b: 2\nrules:\n  - name: x\n  - { name: y, metric: m }\n";
        assert_eq!(line_of(t, "c.d.b"), Some(5));
        assert_eq!(line_of(t, "a.b"), Some(2));
        assert_eq!(line_of(t, "c.d"), Some(4));
        assert_eq!(line_of(t, "rules[1].metric"), Some(8));
        assert_eq!(line_of(t, "rules[0]"), Some(7));
        // Absent tails fall back to the longest present prefix; nothing at all is None.
        assert_eq!(line_of(t, "c.d.zz"), Some(4));
        assert_eq!(line_of(t, "zz"), None);
        // A key's name appearing as a value elsewhere is not taken for the key.
        let t = "name: b\nx:\n  y: b\nb: 3\n";
        assert_eq!(line_of(t, "b"), Some(4));
    }

    #[test]
    fn a_section_lists_its_keys() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            alpha: Option<u8>,
            beta: Option<u8>,
        }
        assert_eq!(fields_of::<S>(), ["alpha", "beta"]);
    }
}
