//! Strict JSON reading of webhook bodies: the one reading that signature checks and parsers share.
//!
//! serde_json keeps the last of two equal keys, so a body with a key twice can say one thing to
//! a check and another to the parser. Every body is first checked here: one JSON value, nothing
//! after it, no object with a key twice (compared after unescaping, so `"a"` and `"\u0061"` are
//! the same key) at any depth. Scalars are read from their exact text ([`Scalar`]), so a 30-digit
//! id does not pass through a float.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a body is not JSON that hookbridge reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("body is not valid JSON ({0})")]
    Syntax(String),
    #[error("body has {0}: readers disagree on which one counts, so it is refused")]
    DuplicateKey(String),
}

/// Checks that `body` is exactly one JSON value with no duplicate object keys.
pub fn check(body: &[u8]) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Unique::deserialize(&mut de)
        .and_then(|_| de.end())
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => JsonError::DuplicateKey(e.to_string()),
            _ => JsonError::Syntax(e.to_string()),
        })
}

/// What kind of value a checked JSON text is, for error messages.
pub fn kind_of(json: &[u8]) -> &'static str {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The top-level object of a body that passed [`check`], as its members' exact texts, for
/// sources that verify a member's bytes and then parse those same bytes.
pub fn members(body: &[u8]) -> Result<BTreeMap<String, &RawValue>, JsonError> {
    serde_json::from_slice(body).map_err(|e| JsonError::Syntax(e.to_string()))
}

/// Compact JSON with every object's keys sorted, strings escaped as serde_json writes them and
/// numbers exactly as written: the same text for every formatting of the same value, without a
/// float in between (so two ids that differ in their 20th digit stay two texts).
pub fn canonical(json: &str) -> Result<String, JsonError> {
    let mut out = String::with_capacity(json.len());
    write_canonical(json, &mut out).map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(out)
}

fn write_canonical(json: &str, out: &mut String) -> Result<(), serde_json::Error> {
    let json = json.trim();
    match json.as_bytes().first() {
        Some(b'{') => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(json)?;
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                write_canonical(value.get(), out)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(json)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item.get(), out)?;
            }
            out.push(']');
        }
        Some(b'"') => out.push_str(&serde_json::to_string(&serde_json::from_str::<String>(
            json,
        )?)?),
        _ => out.push_str(json),
    }
    Ok(())
}

/// Visits a whole value and fails on the first object that has a key twice.
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<Unique>()?;
            if seen.contains(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(de::Error::custom(format!(
                    "the key {shown:?} twice in one object"
                )));
            }
            seen.insert(key);
        }
        Ok(Unique)
    }
}

/// A JSON scalar as text: a string's contents, a number's exact digits, `None` for null.
/// Arrays, objects and booleans are not scalars.
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str(text)
                .map(|s| Scalar(Some(s)))
                .map_err(de::Error::custom),
            Some(b'n') => Ok(Scalar(None)),
            Some(b'-' | b'0'..=b'9') => Ok(Scalar(Some(text.to_owned()))),
            _ => Err(de::Error::custom("expected a string")),
        }
    }
}

/// A list as its elements' exact texts, or one string (or null) standing for a list.
pub enum ListOrOne {
    List(Vec<Box<RawValue>>),
    One(Scalar),
}

impl<'de> Deserialize<'de> for ListOrOne {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        match raw.get().as_bytes().first() {
            Some(b'[') => serde_json::from_str(raw.get())
                .map(ListOrOne::List)
                .map_err(de::Error::custom),
            Some(b'"' | b'n') => serde_json::from_str(raw.get())
                .map(ListOrOne::One)
                .map_err(de::Error::custom),
            _ => Err(de::Error::custom("expected a list of strings")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for body in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":{"b":[{"c":1,"c":1}]}}"#,
            r#"[{"k":null,"k":null}]"#,
        ] {
            let err = check(body.as_bytes()).unwrap_err();
            assert!(matches!(err, JsonError::DuplicateKey(_)), "{body}: {err}");
            assert!(err.to_string().contains("twice in one object"), "{err}");
        }
        assert!(check(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok());
    }

    #[test]
    fn one_value_and_nothing_after_it() {
        for body in ["", "{", "{}{}", "{} x", r#"{"a":1}]"#, "\u{feff}{}"] {
            let err = check(body.as_bytes()).unwrap_err();
            assert!(matches!(err, JsonError::Syntax(_)), "{body:?}: {err}");
        }
        assert!(check(b" {} \n").is_ok());
    }

    #[test]
    fn scalars_keep_their_exact_text() {
        let read = |t: &str| serde_json::from_str::<Scalar>(t).map(|s| s.0);
        let big = "123456789012345678901234567890";
        assert_eq!(read(big).unwrap().as_deref(), Some(big));
        assert_eq!(read("-1.50e3").unwrap().as_deref(), Some("-1.50e3"));
        assert_eq!(read(r#""工\n""#).unwrap().as_deref(), Some("工\n"));
        assert_eq!(read("null").unwrap(), None);
        assert!(read("true").is_err() && read("[1]").is_err() && read("{}").is_err());
    }

    #[test]
    fn canonical_sorts_keys_and_keeps_numbers() {
        let a = r#"{ "b": [1, {"y":2,"x":"\u5de5"}], "a": 123456789012345678901234567891 }"#;
        let b = r#"{"a":123456789012345678901234567891,"b":[1,{"x":"工","y":2}]}"#;
        assert_eq!(canonical(a).unwrap(), b);
        assert_eq!(canonical(b).unwrap(), b);
        let other = b.replace("891", "890");
        assert_ne!(canonical(&other).unwrap(), b, "no float in between");
    }

    #[test]
    fn members_are_the_exact_bytes() {
        let body = br#"{ "b" : { "z":1, "a" : "\u5de5" }, "a":[1, 2] }"#;
        let m = members(body).unwrap();
        assert_eq!(m["b"].get(), r#"{ "z":1, "a" : "\u5de5" }"#);
        assert_eq!(m["a"].get(), "[1, 2]");
        assert!(members(b"[1]").is_err(), "not an object");
    }
}
