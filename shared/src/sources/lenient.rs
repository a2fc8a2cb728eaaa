//! Tolerant field decoders for hand-built webhook bodies: numbers where strings were expected,
//! numeric strings where numbers were, `null` for absent. Anything else is an error that names
//! the field, so the sender knows what to fix. Ids keep their exact text whatever their JSON type.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::{Deserializer, Error};
use serde_json::Value;

use super::json::{ListOrOne, Scalar};

/// A string, a number (its exact digits) or `null` (empty).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Scalar::deserialize(d)?.0.unwrap_or_default())
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

/// A list of strings; numbers are kept as their digits, a single string is one entry, `null` is
/// empty. Entries are trimmed, empties dropped, duplicates removed keeping the first.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    list(d, false)
}

fn list<'de, D: Deserializer<'de>>(d: D, split_commas: bool) -> Result<Vec<String>, D::Error> {
    let wrong = || D::Error::custom("expected a list of strings");
    let items: Vec<String> = match ListOrOne::deserialize(d)? {
        ListOrOne::One(Scalar(None)) => vec![],
        ListOrOne::One(Scalar(Some(s))) if split_commas => {
            s.split(',').map(str::to_owned).collect()
        }
        ListOrOne::One(Scalar(Some(s))) => vec![s],
        ListOrOne::List(raw) => raw
            .iter()
            .filter_map(|r| {
                serde_json::from_str::<Scalar>(r.get())
                    .map(|s| s.0)
                    .transpose()
            })
            .collect::<Result<_, _>>()
            .map_err(|_| wrong())?,
    };
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim();
        if !item.is_empty() && seen.insert(item.to_owned()) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}
