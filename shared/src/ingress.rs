//! The one pipeline every source goes through (docs/how-it-works.md):
//! find the source by path → authenticate → body limit → content type → parse → route and
//! render → one conditional write of the event and its deliveries → acknowledge.
//!
//! Nothing is acknowledged that was not stored: a store failure answers 503 so the source
//! retries, a duplicate answers 200 and writes nothing. Each source answers in its own format.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use http::{HeaderMap, StatusCode};
use tracing::{Span, error, info, instrument, warn};

use crate::event::{Delivery, MAX_DELIVERIES, Millis};
use crate::logging::LogId;
use crate::metrics;
use crate::routing::Router;
use crate::sources::{Accepted, Head, Rejection, Source, Verify};
use crate::store::{EventStore, Inserted, StoreError};

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
        self.preview_to(path, body, now, None)
    }

    /// [`Ingress::preview`], with the event's recipients replaced by `to` when given (the
    /// console's test send to one person).
    pub fn preview_to(
        &self,
        path: Option<&str>,
        body: &[u8],
        now: Millis,
        to: Option<&str>,
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
        let headers = HeaderMap::new();
        let head = Head {
            path: endpoint,
            headers: &headers,
            peer: None,
        };
        let mut events = source.parse(&head, body, now, Verify::Skip)?;
        if let Some(to) = to {
            for notice in events.iter_mut().filter_map(|p| p.notice.as_mut()) {
                notice.recipients = vec![to.to_owned()];
            }
        }
        let deliveries = events
            .iter()
            .flat_map(|p| self.router.plan(p, now))
            .collect();
        Ok((endpoint, deliveries))
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
        let head = Head {
            path: endpoint,
            headers: &req.headers,
            peer: req.peer,
        };
        let events = source.parse(&head, &req.body, now, Verify::Yes)?;
        let Some(first) = events.first() else {
            return Err(Rejection::BadRequest(
                "the body carries nothing to store".into(),
            ));
        };
        let first = first.event.pk();
        Span::current().record("event", tracing::field::display(LogId(&first)));
        let mut planned = Vec::with_capacity(events.len());
        for parsed in &events {
            // An id the store cannot key (DynamoDB keys are at most 2 KB) would be refused by
            // it on every retry: refused here instead, with the reason.
            if parsed.event.key.len() > MAX_EVENT_KEY_BYTES {
                return Err(Rejection::BadRequest(format!(
                    "the event's id is {} bytes long; at most {MAX_EVENT_KEY_BYTES} are taken",
                    parsed.event.key.len()
                )));
            }
            let deliveries = self.router.plan(parsed, now);
            // Every delivery is written before the source is answered, within its timeout: an
            // event that needs more than the bound is refused, with what to change.
            if deliveries.len() > MAX_DELIVERIES {
                return Err(Rejection::BadRequest(format!(
                    "this event needs {} deliveries but one event carries at most {MAX_DELIVERIES} \
                     (100 recipients each for notices): send it to fewer recipients",
                    deliveries.len()
                )));
            }
            planned.push((&parsed.event, deliveries));
        }
        // Each event is stored apiece, so a retry after a failure part-way finds the stored ones
        // duplicates and stores the rest: nothing twice, nothing acknowledged that was not kept.
        // The answer names the first event as the log does: a 200 KB id is not echoed whole.
        let mut accepted = Accepted {
            event: LogId(&first).to_string(),
            events: planned.len(),
            duplicate: true,
            deliveries: 0,
        };
        // The events of one request (an Alertmanager group) are stored side by side.
        let inserts: Vec<_> = planned
            .iter()
            .map(|(event, deliveries)| async move {
                let inserted = self.store.insert(event, deliveries).await?;
                Ok::<_, StoreError>((inserted, deliveries.len()))
            })
            .collect();
        let stored = stream::iter(inserts)
            .buffer_unordered(EVENTS_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await;
        match stored {
            Ok(stored) => {
                for (inserted, deliveries) in stored {
                    if inserted == Inserted::Created {
                        accepted.duplicate = false;
                        accepted.deliveries += deliveries;
                    }
                }
                Ok(accepted)
            }
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

/// Events of one request stored at once; each puts its own states a few at a time too.
const EVENTS_AT_ONCE: usize = 4;

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
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::event::Event;
    use crate::sources::Parsed;
    use crate::store::StoreError;
    use crate::store::memory::MemoryStore;
    use crate::templates::Templates;

    /// Each line of the body is an event.
    struct Lines;

    impl Source for Lines {
        fn name(&self) -> &'static str {
            "lines"
        }
        fn paths(&self) -> &'static [&'static str] {
            &["/lines"]
        }
        fn max_body_bytes(&self) -> usize {
            1024
        }
        fn authenticate(&self, _: &Head) -> Result<(), Rejection> {
            Ok(())
        }
        fn strict_content_type(&self) -> bool {
            false
        }
        fn parse(
            &self,
            _: &Head,
            body: &[u8],
            now: Millis,
            _: Verify,
        ) -> Result<Vec<Parsed>, Rejection> {
            let text = String::from_utf8_lossy(body);
            Ok(text
                .lines()
                .map(|line| Parsed {
                    event: Event {
                        source: "lines".into(),
                        key: line.into(),
                        kind: "line".into(),
                        received_at: now,
                        payload: serde_json::Value::Null,
                        raw: line.into(),
                    },
                    notice: None,
                })
                .collect())
        }
        fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
            format!("{outcome:?}")
        }
        fn recognize(&self, _: &serde_json::Value) -> Option<&'static str> {
            None
        }
        fn credentials(&self) -> String {
            String::new()
        }
    }

    /// A store whose `fail_at`-th insert (counting from 0) fails once.
    struct Flaky {
        inner: MemoryStore,
        calls: AtomicUsize,
        fail_at: usize,
    }

    #[async_trait]
    impl EventStore for Flaky {
        async fn insert(
            &self,
            event: &Event,
            deliveries: &[Delivery],
        ) -> Result<Inserted, StoreError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) == self.fail_at {
                return Err(StoreError::Unavailable("down for one write".into()));
            }
            self.inner.insert(event, deliveries).await
        }
        async fn events(
            &self,
            filter: &crate::event::EventFilter,
            limit: usize,
        ) -> Result<Vec<Event>, StoreError> {
            self.inner.events(filter, limit).await
        }
        async fn event(&self, pk: &str) -> Result<Option<Event>, StoreError> {
            self.inner.event(pk).await
        }
    }

    fn post(body: &str) -> Request {
        Request {
            id: "r".into(),
            method: http::Method::POST,
            path: "/lines".into(),
            headers: HeaderMap::new(),
            peer: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    /// A request of several events stores each apiece: a failure part-way answers 503, and the
    /// retry stores the rest, the stored ones being duplicates. Nothing twice, nothing lost.
    #[tokio::test]
    async fn a_request_of_several_events_stores_each_and_a_retry_finishes_it() {
        let store = Arc::new(Flaky {
            inner: MemoryStore::new(),
            calls: AtomicUsize::new(0),
            fail_at: 1,
        });
        let router = Router::new(
            &[],
            BTreeMap::new(),
            &[],
            Templates::new(&[], &BTreeMap::new()).unwrap(),
        )
        .unwrap();
        let ingress = Ingress::new(vec![Arc::new(Lines)], router, store.clone());
        let first = ingress.handle(post("a\nb\nc"), 0).await;
        assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
        let retry = ingress.handle(post("a\nb\nc"), 0).await;
        assert_eq!(retry.status, StatusCode::OK);
        assert!(
            retry.body.contains("events: 3, duplicate: false"),
            "{}",
            retry.body
        );
        let again = ingress.handle(post("a\nb\nc"), 0).await;
        assert!(again.body.contains("duplicate: true"), "{}", again.body);
        let empty = ingress.handle(post(""), 0).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{empty:?}");
    }

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
