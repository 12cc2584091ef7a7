//! A JSON object's fields as parsed, keys borrowed from the message where they need no
//! unescaping: the decoder's working form of a record.
//!
//! `serde_json::Map` (an `IndexMap` here) allocates every key and hashes it twice (insert,
//! then the builder's remove) — about a quarter of decoding's CPU profile. A record has a
//! few dozen fields at most, so a vector searched linearly is cheaper. Semantics follow
//! `serde_json::Map`: with duplicate keys the last value wins and the key keeps its first
//! position.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The fields of one object, in message order (duplicates included until removed).
/// A removed field leaves a `None` behind rather than shifting the fields after it: the
/// decoder takes out most fields of every record, one by one.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    items: Vec<(Cow<'a, str>, Option<Value>)>,
    /// Fields not removed yet.
    live: usize,
}

impl Fields<'_> {
    /// The value of `key` (the last one, if repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.items
            .iter()
            .rev()
            .find(|(k, v)| v.is_some() && k == key)
            .and_then(|(_, v)| v.as_ref())
    }

    /// Take `key` out (every occurrence); its value is the last one.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        let mut last = None;
        for (k, v) in self.items.iter_mut().rev() {
            if v.is_some() && k == key {
                // Earlier duplicates (rare) go too, as a map would have overwritten them.
                let taken = v.take();
                self.live -= 1;
                last = last.or(taken);
            }
        }
        last
    }

    /// Take out, in one pass, every field `slot_of` knows, into its slot (the last value
    /// of a repeated key wins, as with [`Fields::remove`]); the others stay.
    pub(crate) fn take_known(
        &mut self,
        slots: &mut [Option<Value>],
        slot_of: impl Fn(&str) -> Option<usize>,
    ) {
        for (k, v) in &mut self.items {
            if v.is_some()
                && let Some(i) = slot_of(k)
            {
                slots[i] = v.take();
                self.live -= 1;
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// What is left, as the JSON object `serde_json::Map` would hold.
    pub(crate) fn into_map(self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in self.items {
            if let Some(v) = v {
                m.insert(k.into_owned(), v);
            }
        }
        m
    }
}

impl From<Map<String, Value>> for Fields<'static> {
    fn from(m: Map<String, Value>) -> Self {
        Fields {
            live: m.len(),
            items: m
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Some(v)))
                .collect(),
        }
    }
}

/// A key, borrowed when the message holds it verbatim.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut items = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(k)) = map.next_key()? {
                    items.push((k, Some(map.next_value::<Value>()?)));
                }
                Ok(Fields {
                    live: items.len(),
                    items,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_behave_like_a_map() {
        let text = r#"{"a":1,"b":2,"a":3,"c\u0041":4,"b":5}"#;
        let mut f: Fields = serde_json::from_str(text).unwrap();
        assert!(matches!(f.items[0].0, Cow::Borrowed("a")));
        assert!(matches!(f.items[3].0, Cow::Owned(_)), "escaped key");
        assert_eq!(f.get("a"), Some(&Value::from(3)));
        assert_eq!(f.remove("a"), Some(Value::from(3)));
        assert_eq!(f.get("a"), None);
        let as_map: Map<String, Value> = serde_json::from_str(text).unwrap();
        let mut m = as_map.clone();
        m.remove("a");
        assert_eq!(f.into_map(), m);
        let f: Fields = serde_json::from_str(text).unwrap();
        assert_eq!(f.into_map(), as_map);
        // Removed fields are gone for get, is_empty and into_map alike.
        let mut f: Fields = serde_json::from_str(text).unwrap();
        assert_eq!(f.remove("b"), Some(Value::from(5)));
        assert_eq!(f.remove("b"), None);
        assert_eq!(f.remove("cA"), Some(Value::from(4)));
        assert!(!f.is_empty());
        assert_eq!(f.remove("a"), Some(Value::from(3)));
        assert!(f.is_empty());
        assert!(f.into_map().is_empty());
    }

    #[test]
    fn taking_the_known_fields_at_once_is_removing_them_one_by_one() {
        let text = r#"{"a":1,"b":2,"a":3,"c\u0041":4,"b":5,"x":6}"#;
        let mut f: Fields = serde_json::from_str(text).unwrap();
        let mut slots = vec![None; 3];
        f.take_known(&mut slots, |k| {
            ["a", "b", "cA"].iter().position(|n| *n == k)
        });
        assert_eq!(
            slots,
            [
                Some(Value::from(3)),
                Some(Value::from(5)),
                Some(Value::from(4))
            ]
        );
        assert!(!f.is_empty());
        let mut by_one: Fields = serde_json::from_str(text).unwrap();
        for k in ["a", "b", "cA"] {
            by_one.remove(k);
        }
        assert_eq!(f.into_map(), by_one.into_map());
    }

    #[test]
    fn only_objects() {
        for bad in ["[1]", "\"x\"", "null", "{\"a\":}", "{\"a\":1"] {
            assert!(serde_json::from_str::<Fields>(bad).is_err(), "{bad}");
        }
    }
}
