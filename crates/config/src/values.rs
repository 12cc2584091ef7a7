//! Typed values of the pipeline file: each checks itself while the YAML is read, so a bad
//! value is reported by serde with its key path and line like any type error, and the
//! validated sections hold `Duration`s, `Time`s and `RecordType`s instead of strings.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crmdq_schema::RecordType;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

/// A positive number of seconds (fractions allowed).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "f64")]
pub struct Seconds(pub Duration);

impl TryFrom<f64> for Seconds {
    type Error = String;
    fn try_from(s: f64) -> Result<Self, String> {
        if s.is_finite() && s > 0.0 {
            Ok(Seconds(Duration::from_secs_f64(s)))
        } else {
            Err(format!("must be a positive number of seconds, not {s}"))
        }
    }
}

/// A positive number of hours (fractions allowed).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "f64")]
pub struct Hours(pub Duration);

impl TryFrom<f64> for Hours {
    type Error = String;
    fn try_from(h: f64) -> Result<Self, String> {
        if h.is_finite() && h > 0.0 {
            Ok(Hours(Duration::from_secs_f64(h * 3600.0)))
        } else {
            Err(format!("must be a positive number of hours, not {h}"))
        }
    }
}

/// A whole number of seconds that may be 0 but not negative (a negative allowance used to
/// be clamped to 0 silently).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct WholeSeconds(pub Duration);

impl TryFrom<i64> for WholeSeconds {
    type Error = String;
    fn try_from(s: i64) -> Result<Self, String> {
        u64::try_from(s)
            .map(|s| WholeSeconds(Duration::from_secs(s)))
            .map_err(|_| format!("must be 0 or more seconds, not {s}"))
    }
}

/// A count or size greater than 0.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u64")]
pub struct Positive(pub u64);

impl TryFrom<u64> for Positive {
    type Error = &'static str;
    fn try_from(n: u64) -> Result<Self, &'static str> {
        if n == 0 {
            Err("must be greater than 0")
        } else {
            Ok(Positive(n))
        }
    }
}

/// One byte (`\t` written as an escape is a tab).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct OneByte(pub u8);

impl TryFrom<String> for OneByte {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "\\t" | "\t" => Ok(OneByte(b'\t')),
            _ if s.len() == 1 => Ok(OneByte(s.as_bytes()[0])),
            _ => Err(format!("`{s}` is not a single byte")),
        }
    }
}

/// A local time of day, `HH:MM` or `HH:MM:SS`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct ClockTime(pub Time);

impl TryFrom<String> for ClockTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| p.parse::<i8>().ok();
        let t = match parts.as_slice() {
            [h, m] => num(h)
                .zip(num(m))
                .and_then(|(h, m)| Time::new(h, m, 0, 0).ok()),
            [h, m, sec] => match (num(h), num(m), num(sec)) {
                (Some(h), Some(m), Some(sec)) => Time::new(h, m, sec, 0).ok(),
                _ => None,
            },
            _ => None,
        };
        t.map(ClockTime)
            .ok_or_else(|| format!("`{s}` is not HH:MM or HH:MM:SS"))
    }
}

/// A calendar date, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Day(pub Date);

impl TryFrom<String> for Day {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse::<Date>()
            .map(Day)
            .map_err(|e| format!("`{s}` is not a YYYY-MM-DD date: {e}"))
    }
}

/// An `IP:port` listen address.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct Addr(pub SocketAddr);

impl TryFrom<String> for Addr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
            .map(Addr)
            .map_err(|e| format!("`{s}` is not an IP:port address ({e})"))
    }
}

/// A record type's name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct TypeName(pub RecordType);

impl TryFrom<String> for TypeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse::<RecordType>()
            .map(TypeName)
            .map_err(|e| e.to_string())
    }
}

/// An IANA time zone, with the name it was given by.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl TryFrom<String> for Zone {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match TimeZone::get(&name) {
            Ok(tz) => Ok(Zone { name, tz }),
            Err(e) => Err(format!("unknown time zone `{name}`: {e}")),
        }
    }
}

/// An ISO 3166 region code (shape only: the check stage holds the phone metadata).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Region(pub String);

impl TryFrom<String> for Region {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let up = s.to_uppercase();
        if up.len() == 2 && up.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Region(up))
        } else {
            Err(format!("`{s}` is not a two-letter region code"))
        }
    }
}

/// A YAML map read in the order the file lists it (where the order means something, e.g.
/// a source mapping's columns).
#[derive(Debug, Default)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry::<String, V>()? {
                    out.push(kv);
                }
                Ok(Ordered(out))
            }
            fn visit_unit<E>(self) -> Result<Ordered<V>, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        d.deserialize_map(V_(std::marker::PhantomData))
    }
}
