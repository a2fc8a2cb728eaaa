//! Webhook sources. Each is one file: authenticate, parse, normalize, and answer in the
//! source's own response format. They plug into [`crate::ingress`].

pub mod dms;
pub mod hap;
pub mod json;
mod lenient;

use crate::ingress::Rejection;

/// The typed view of a parsed request that routing works from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    HapMessage(hap::HapMessage),
    HapFinish(hap::FinishTodo),
    Dms(dms::DmsEvent),
}

/// Decodes a JSON object body into `T`, read strictly ([`json::check`]), with errors that say
/// which field is wrong.
fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Rejection> {
    json::check(body).map_err(|e| Rejection::BadRequest(format!("{what}: {e}")))?;
    let kind = json::kind_of(body);
    if kind != "an object" {
        return Err(Rejection::BadRequest(format!(
            "{what}: body must be a JSON object, not {kind}"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // serde quotes the offending value, which may be huge: the start is enough to act on.
        let inner: String = e.into_inner().to_string().chars().take(300).collect();
        Rejection::BadRequest(if path == "." {
            format!("{what}: {inner}")
        } else {
            format!("{what}: field {path}: {inner}")
        })
    })
}
