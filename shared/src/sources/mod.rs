//! Webhook sources. Each is one file: authenticate, parse, normalize, and answer in the
//! source's own response format. They plug into [`crate::ingress`].

pub mod dms;
pub mod hap;
mod lenient;

use serde_json::Value;

use crate::ingress::Rejection;

/// The typed view of a parsed request that routing works from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    HapMessage(hap::HapMessage),
    HapFinish(hap::FinishTodo),
    Dms(dms::DmsEvent),
}

/// Decodes a JSON object body into `T`, with errors that say which field is wrong.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::BadRequest(format!("{what}: body is not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(Rejection::BadRequest(format!(
            "{what}: body must be a JSON object, not {}",
            match value {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Rejection::BadRequest(if path == "." {
            format!("{what}: {inner}")
        } else {
            format!("{what}: field {path}: {inner}")
        })
    })
}
