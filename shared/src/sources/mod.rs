//! Webhook sources. Each is one file: authenticate, parse, normalize, and answer in the
//! source's own response format. This module owns their contract ([`Source`], [`Parsed`],
//! [`Rejection`], [`Accepted`]); they plug into [`crate::ingress`].

pub mod alertmanager;
mod allow;
pub mod dms;
pub mod generic;
pub mod govding;
pub mod hap;
pub mod json;
mod lenient;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

pub use allow::AllowIps;

use crate::event::{Event, Millis};
use crate::notice::Notice;
use crate::setup::{ConfigError, Secrets};
use crate::templates::Builtin;

/// What a source checks before the body: the path it was posted to, the headers, and the
/// address it came from (API Gateway's source IP, or the peer in `serve`).
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub peer: Option<std::net::IpAddr>,
}

/// Why a request was not accepted. Every variant but `Unavailable` is the sender's to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A path the source serves but not with this secret part (a wrong path token).
    #[error("no webhook here")]
    NotFound,
    #[error("{method} is not allowed here: webhooks are POST requests")]
    MethodNotAllowed { method: String },
    #[error("body is too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {secs} s")]
    Timeout { secs: u64 },
    #[error("content type {0:?} is not supported; send the body as application/json")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    /// The details are in the log under the request id, never in the answer.
    #[error("could not store the event, please retry (request id {request_id})")]
    Unavailable { request_id: String },
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short name of the kind of refusal, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed { .. } => "method",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Timeout { .. } => "timeout",
            Rejection::UnsupportedMediaType(_) => "content_type",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::BadRequest(_) => "bad_request",
            Rejection::Unavailable { .. } => "unavailable",
        }
    }
}

/// What the pipeline did with an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The (first) event's key, cut like a log id when long.
    pub event: String,
    /// How many events the request carried.
    pub events: usize,
    /// Every one of them was stored before.
    pub duplicate: bool,
    /// Deliveries created for those that were new.
    pub deliveries: usize,
}

/// A parsed request: the event to store, and the notice routing delivers (`None`: store and
/// acknowledge only, like the DMS console's test message).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub event: Event,
    pub notice: Option<Notice>,
}

/// Whether `parse` checks what covers the body (signatures) on the reading it parses.
/// `Skip` is only for previewing a body (`config check --fixture`), never for storing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Yes,
    Skip,
}

/// A webhook source: one file in `sources/`.
pub trait Source: Send + Sync {
    fn name(&self) -> &'static str;
    /// The paths this source serves, e.g. `/hap/message`, as shown to people.
    fn paths(&self) -> &'static [&'static str];
    /// Which of its paths `path` is: exactly one of them, unless the source's paths carry a
    /// secret part it checks in `authenticate`.
    fn endpoint(&self, path: &str) -> Option<&'static str> {
        self.paths().iter().find(|p| **p == path).copied()
    }
    fn max_body_bytes(&self) -> usize;
    /// Checks the request's head (tokens, Basic auth, path token, origin) before the body is
    /// looked at.
    fn authenticate(&self, head: &Head) -> Result<(), Rejection>;
    /// Whether a non-JSON `Content-Type` is rejected; sources that send JSON with no or a
    /// wrong content type say no.
    fn strict_content_type(&self) -> bool {
        true
    }
    /// Reads the body once and, with `Verify::Yes`, checks its signature on that same reading:
    /// what is verified is exactly what is parsed and delivered. Runs after the size and
    /// content-type checks; `head.path` is the endpoint (one of [`Source::paths`]), and the
    /// headers are there for a signature sent beside the body. The events the request carries, at least one: most requests are
    /// one event; a request that reports several things (an alert group) is one event each,
    /// stored and deduplicated apiece.
    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Vec<Parsed>, Rejection>;
    /// The response body in the source's format.
    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String;
    /// Which of its paths `body` was meant for, judged from the body alone (to preview a
    /// captured body whose path was not kept, `config check --fixture`).
    fn recognize(&self, body: &Value) -> Option<&'static str>;
    /// What the source proves itself with, besides the URL, as an operator sets it up there
    /// (`hookbridge check`); never a secret's value.
    fn credentials(&self) -> String;
}

/// How the registry (`registry.rs`) makes a source from its `[sources.<name>]` section.
#[async_trait]
pub trait SourcePart {
    type Config: crate::setup::Section;
    /// What its events read like unless a route picks another template.
    const TEMPLATE: Builtin;
    /// The same in English, for routes with `language = "en"`; none: such a route needs its
    /// own `template`.
    const TEMPLATE_EN: Option<Builtin> = None;
    /// What is wrong with the section beyond its types, before any secret is resolved.
    fn check(_config: &Self::Config) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The source, with its secrets resolved (and no other part's).
    async fn build(
        config: &Self::Config,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Source>, ConfigError>;
    /// Its own `hookbridge <name> …` command, if it has one.
    #[cfg(feature = "cli")]
    fn tool() -> Option<crate::tools::Tool> {
        None
    }
    /// What to enter in the source system for this deployment (`hookbridge setup <name>`).
    #[cfg(feature = "cli")]
    async fn setup(
        _config: &Self::Config,
        _at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        Ok(String::new())
    }
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

/// The stored form of a parsed body.
fn payload<T: serde::Serialize>(parsed: &T) -> Result<Value, Rejection> {
    serde_json::to_value(parsed)
        .map_err(|e| Rejection::BadRequest(format!("the body cannot be stored: {e}")))
}

/// The body limit of a source that does not set its own.
fn default_max_body() -> usize {
    256 * 1024
}
