//! Tolerant field decoders for hand-built webhook bodies: numbers where strings were expected,
//! numeric strings where numbers were, `null` for absent. Anything else is an error that names
//! the field, so the sender knows what to fix.

use serde::Deserialize;
use serde::de::{Deserializer, Error};
use serde_json::Value;

fn as_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string, a number (stringified) or `null` (empty).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        v => as_text(v).ok_or_else(|| D::Error::custom("expected a string")),
    }
}

/// A required id: non-empty string or number.
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = string(d)?;
    if s.trim().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(s.trim().to_owned())
}

/// A small type code from a number or numeric string; anything else is "unknown" (`None`),
/// never an error: unknown message types are still delivered.
pub fn code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A list of ids; as [`string_list`], and a single string is split at commas.
pub fn id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, true)
}

/// A list of strings; numbers are stringified, a single string is one entry, `null` is empty.
/// Entries are trimmed, empties dropped, duplicates removed keeping the first.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, false)
}

fn list<'de, D: Deserializer<'de>>(d: D, split_commas: bool) -> Result<Vec<String>, D::Error> {
    let items: Vec<String> = match Value::deserialize(d)? {
        Value::Null => vec![],
        Value::String(s) if split_commas => s.split(',').map(str::to_owned).collect(),
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .filter(|v| !v.is_null())
            .map(|v| as_text(v).ok_or_else(|| D::Error::custom("expected a list of strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(D::Error::custom("expected a list of strings")),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim();
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}
