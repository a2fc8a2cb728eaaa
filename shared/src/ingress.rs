//! The one pipeline every source goes through (docs/how-it-works.md):
//! find the source by path → authenticate → body limit → content type → parse → route and
//! render → one conditional write of the event and its deliveries → acknowledge.
//!
//! Nothing is acknowledged that was not stored: a store failure answers 503 so the source
//! retries, a duplicate answers 200 and writes nothing. Each source answers in its own format.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tracing::{Span, error, info, instrument, warn};

use crate::event::{Delivery, MAX_DELIVERIES, Millis};
use crate::logging::LogId;
use crate::metrics;
use crate::routing::Router;
use crate::sources::{Accepted, Head, Rejection, Source, Verify};
use crate::store::{EventStore, Inserted};

/// An HTTP request as the pipeline sees it, whatever server or Lambda event carried it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Names this request in the log and in a 503 answer (API Gateway's request id on Lambda).
    pub id: String,
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
    /// Where it came from, when the server knows (API Gateway's source IP, the TCP peer).
    pub peer: Option<std::net::IpAddr>,
    pub body: Bytes,
}

/// A JSON response in the source's own format.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: StatusCode,
    pub body: String,
}

pub struct Ingress {
    sources: Vec<Arc<dyn Source>>,
    router: Router,
    store: Arc<dyn EventStore>,
}

impl Ingress {
    pub fn new(sources: Vec<Arc<dyn Source>>, router: Router, store: Arc<dyn EventStore>) -> Self {
        Ingress {
            sources,
            router,
            store,
        }
    }

    pub fn paths(&self) -> Vec<&'static str> {
        self.sources
            .iter()
            .flat_map(|s| s.paths())
            .copied()
            .collect()
    }

    /// Each source's name, webhook paths and what it proves itself with.
    pub fn endpoints(&self) -> Vec<(&'static str, &'static [&'static str], String)> {
        self.sources
            .iter()
            .map(|s| (s.name(), s.paths(), s.credentials()))
            .collect()
    }

    /// What a request body would become, without authentication or storage: for checking a
    /// config against a captured or sample body (`hookbridge config check --fixture`). Without
    /// a `path`, the source that recognizes the body says which; the path is returned.
    pub fn preview(
        &self,
        path: Option<&str>,
        body: &[u8],
        now: Millis,
    ) -> Result<(&'static str, Vec<Delivery>), Rejection> {
        let path = match path {
            Some(p) => p,
            None => {
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|e| Rejection::BadRequest(format!("the body is not JSON: {e}")))?;
                self.sources
                    .iter()
                    .find_map(|s| s.recognize(&value))
                    .ok_or_else(|| {
                        Rejection::BadRequest(
                            "no configured source recognizes this body; give its path".into(),
                        )
                    })?
            }
        };
        let (source, endpoint) = self.find(path).ok_or_else(|| {
            Rejection::BadRequest(format!(
                "no webhook at {path}; hookbridge serves {}",
                self.paths().join(", ")
            ))
        })?;
        let parsed = source.parse(endpoint, body, now, Verify::Skip)?;
        Ok((endpoint, self.router.plan(&parsed, now)))
    }

    /// The source serving exactly `path` (no prefix or suffix matching: `/x/hap/message` is not
    /// `/hap/message`).
    fn find(&self, path: &str) -> Option<(&Arc<dyn Source>, &'static str)> {
        self.sources
            .iter()
            .find_map(|s| s.endpoint(path).map(|p| (s, p)))
    }

    /// The body limit of the source at `path`, for servers that read the body themselves.
    pub fn body_limit(&self, path: &str) -> Option<usize> {
        self.find(path).map(|(s, _)| s.max_body_bytes())
    }

    /// The answer to a request refused before it reached the pipeline (a body too slow or too
    /// large for the server to read), in the format of the source at `path`.
    pub fn refuse(&self, path: &str, rejection: Rejection) -> Response {
        match self.find(path) {
            Some((source, _)) => {
                let outcome = Err(rejection);
                count(source.name(), &outcome);
                answer(source.as_ref(), outcome)
            }
            None => self.not_found(path),
        }
    }

    /// The JSON 404 for a path no source serves; it lists the webhooks.
    pub fn not_found(&self, path: &str) -> Response {
        let path: String = path.chars().take(200).collect();
        Response {
            status: StatusCode::NOT_FOUND,
            body: serde_json::json!({
                "success": false,
                "error": format!(
                    "no webhook at {path}; hookbridge serves POST {}",
                    self.paths().join(", POST ")
                ),
            })
            .to_string(),
        }
    }

    /// Serves one webhook request. Never fails: every outcome is a response.
    ///
    /// The log names the source's endpoint (`/govding/{token}`), never the path as sent: a path
    /// may carry a secret (the 浙政钉 callback's token).
    #[instrument(skip_all, fields(request = %req.id, path, source, event))]
    pub async fn handle(&self, req: Request, now: Millis) -> Response {
        let Some((source, endpoint)) = self.find(&req.path) else {
            return self.not_found(&req.path);
        };
        Span::current().record("path", endpoint);
        Span::current().record("source", source.name());
        let outcome = self.accept(source.as_ref(), endpoint, &req, now).await;
        match &outcome {
            Ok(a) => info!(
                duplicate = a.duplicate,
                deliveries = a.deliveries,
                "accepted"
            ),
            Err(r @ Rejection::Unavailable { .. }) => error!(error = %r, "not accepted"),
            Err(r) => warn!(error = %r, "rejected"),
        }
        count(source.name(), &outcome);
        answer(source.as_ref(), outcome)
    }

    async fn accept(
        &self,
        source: &dyn Source,
        endpoint: &str,
        req: &Request,
        now: Millis,
    ) -> Result<Accepted, Rejection> {
        if req.method != http::Method::POST {
            return Err(Rejection::MethodNotAllowed {
                method: req.method.to_string(),
            });
        }
        source.authenticate(&Head {
            path: &req.path,
            headers: &req.headers,
            peer: req.peer,
        })?;
        let limit = source.max_body_bytes();
        if req.body.len() > limit {
            return Err(Rejection::TooLarge { limit });
        }
        if source.strict_content_type() {
            check_content_type(&req.headers)?;
        }
        let parsed = source.parse(endpoint, &req.body, now, Verify::Yes)?;
        // An id the store cannot key (DynamoDB keys are at most 2 KB) would be refused by it on
        // every retry: refused here instead, with the reason.
        if parsed.event.key.len() > MAX_EVENT_KEY_BYTES {
            return Err(Rejection::BadRequest(format!(
                "the event's id is {} bytes long; at most {MAX_EVENT_KEY_BYTES} are taken",
                parsed.event.key.len()
            )));
        }
        let pk = parsed.event.pk();
        Span::current().record("event", tracing::field::display(LogId(&pk)));
        let deliveries = self.router.plan(&parsed, now);
        // The event and its deliveries are written at once, and a store writes at most 100
        // items at once: an event that needs more would fail on every retry, so it is refused.
        if deliveries.len() > MAX_DELIVERIES {
            return Err(Rejection::BadRequest(format!(
                "this event needs {} deliveries but one event carries at most {MAX_DELIVERIES} \
                 (100 recipients each for notices): send it to fewer recipients",
                deliveries.len()
            )));
        }
        match self.store.insert(&parsed.event, &deliveries).await {
            // The answer names the event as the log does: a 200 KB id is not echoed back whole.
            Ok(Inserted::Created) => Ok(Accepted {
                event: LogId(&pk).to_string(),
                duplicate: false,
                deliveries: deliveries.len(),
            }),
            Ok(Inserted::Duplicate) => Ok(Accepted {
                event: LogId(&pk).to_string(),
                duplicate: true,
                deliveries: 0,
            }),
            Err(e) => {
                error!(request = %req.id, error = %e, "the store failed; answering 503 so the source retries");
                Err(Rejection::Unavailable {
                    request_id: req.id.clone(),
                })
            }
        }
    }
}

/// The metric of an outcome: accepted, duplicate or rejected (with why).
fn count(source: &'static str, outcome: &Result<Accepted, Rejection>) {
    match outcome {
        Ok(a) if a.duplicate => metrics::count(&metrics::DUPLICATES, &[("Source", source)]),
        Ok(_) => metrics::count(&metrics::ACCEPTED, &[("Source", source)]),
        Err(r) => metrics::count(
            &metrics::REJECTED,
            &[("Source", source), ("Reason", r.reason())],
        ),
    }
}

/// The longest event id (a source's dedupe key) taken: with its prefix it stays within
/// DynamoDB's 2 KB partition key, and no source's real ids come near it.
pub const MAX_EVENT_KEY_BYTES: usize = 1024;

fn answer(source: &dyn Source, outcome: Result<Accepted, Rejection>) -> Response {
    Response {
        status: outcome
            .as_ref()
            .map_or_else(Rejection::status, |_| StatusCode::OK),
        body: source.reply(outcome.as_ref()),
    }
}

/// A short random id for a request that arrived without one.
pub fn request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// JSON, or no content type at all (some senders omit it); anything else is a mistake.
fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("<not text>");
    let media = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" || media.ends_with("+json") {
        Ok(())
    } else {
        Err(Rejection::UnsupportedMediaType(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, t.parse().unwrap());
        h
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(check_content_type(&with_type("application/json; charset=utf-8")).is_ok());
        assert!(check_content_type(&with_type("Application/JSON")).is_ok());
        assert!(check_content_type(&with_type("application/problem+json")).is_ok());
        let err = check_content_type(&with_type("application/x-www-form-urlencoded")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(err.to_string().contains("application/json"));
    }
}
