//! `hookbridge serve`: the whole pipeline in one process. The same ingress handlers behind a
//! local HTTP server, the in-memory store's change feed in place of the DynamoDB stream, a
//! sender per connector, and the sweeper on a timer.
//!
//! The server is built for the open network: request headers and bodies have deadlines, the
//! number of connections is capped, paths match exactly, every answer is JSON (but the
//! Prometheus text of `/metrics`), `/deliveries` and `/metrics` answer only loopback clients
//! unless an operator token is set, and [`Local::shutdown`] stops accepting, finishes the
//! requests and sends in flight, then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::Service;
use tracing::{debug, error, info, warn};

use crate::app::{App, Parts};
use crate::config::{Config, Secrets, ServerConfig};
use crate::delivery::{sweep, until_stopped};
use crate::event::{Delivery, DeliveryFilter, EventFilter, Millis, Status, beijing_month, now_ms};
use crate::ingress::{Request, request_id};
use crate::logging::LogId;
use crate::operator::{self, OperatorError};
use crate::sources::Rejection;
use crate::store::memory::MemoryStore;

/// How long shutdown waits for the requests in flight before it closes their connections.
const DRAIN: Duration = Duration::from_secs(30);

/// How often expired items are removed from the store (and once at start).
const PURGE_EVERY: Duration = Duration::from_secs(600);

struct Serve {
    app: Arc<App>,
    operator_token: Option<String>,
    body_timeout: Duration,
    /// The `Host` values the operator endpoints answer without the token, lowercase.
    hosts: Vec<String>,
}

/// The HTTP routes of `serve` over `app` listening on `addr`, with the operator token
/// resolved. What [`Local`] serves; public so tests can drive it with any peer address.
pub fn router(
    app: Arc<App>,
    server: &ServerConfig,
    operator_token: Option<String>,
    addr: SocketAddr,
) -> Router {
    let serve = Arc::new(Serve {
        app,
        operator_token,
        body_timeout: Duration::from_secs(server.body_timeout_secs.max(1)),
        hosts: own_hosts(addr, &server.hosts),
    });
    let json_405 = |allowed: &'static str| {
        move |method: Method| async move {
            error_json(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed here; use {allowed}"),
            )
        }
    };
    Router::new()
        .route(
            "/deliveries",
            get(deliveries).fallback(json_405("GET /deliveries")),
        )
        .route(
            "/status",
            get(status).fallback(json_405("GET /status?month=YYYY-MM")),
        )
        .route("/events", get(events).fallback(json_405("GET /events")))
        .route(
            "/deliveries/show",
            get(|s, p, m, h, q| by_id(ById::Show, s, p, m, h, q))
                .fallback(json_405("GET /deliveries/show?id=")),
        )
        .route(
            "/deliveries/replay",
            post(|s, p, m, h, q| by_id(ById::Replay, s, p, m, h, q))
                .fallback(json_405("POST /deliveries/replay?id=")),
        )
        .route(
            "/deliveries/recall",
            post(|s, p, m, h, q| by_id(ById::Recall, s, p, m, h, q))
                .fallback(json_405("POST /deliveries/recall?id=")),
        )
        .route("/metrics", get(metrics).fallback(json_405("GET /metrics")))
        .route("/healthz", get(healthz).fallback(json_405("GET /healthz")))
        .fallback(webhook)
        .with_state(serve.clone())
        .merge(crate::console::router(
            serve.app.clone(),
            crate::console::Guard {
                token: serve.operator_token.clone(),
                hosts: serve.hosts.clone(),
            },
            None,
        ))
}

/// `GET /healthz`: 200 while the store takes writes, 503 while it does not (a full disk), so
/// that a load balancer or supervisor sees what the sources see.
async fn healthz(State(serve): State<Arc<Serve>>) -> Response {
    match serve.app.store.writable() {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => {
            let body = json!({ "ok": false, "error": format!("the store cannot write: {e}") });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

fn error_json(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "success": false, "error": error }))).into_response()
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Every path but the operator endpoints: the source at exactly that path answers, in its own
/// format; without one, a JSON 404 that lists the webhooks.
async fn webhook(
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ingress = &serve.app.ingress;
    let path = uri.path().to_owned();
    let id = request_id();
    let Some(limit) = ingress.body_limit(&path) else {
        let r = ingress.not_found(&path);
        return json_response(r.status, r.body);
    };
    // Read at most one byte past the source's limit, within the body deadline.
    let read = tokio::time::timeout(serve.body_timeout, axum::body::to_bytes(body, limit));
    let body = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let rejection = if too_large {
                Rejection::TooLarge { limit }
            } else {
                Rejection::BadRequest("the body could not be read to its end".into())
            };
            debug!(request = %id, error = %e, "body not read");
            let r = ingress.refuse(&path, rejection);
            return json_response(r.status, r.body);
        }
        Err(_) => {
            let secs = serve.body_timeout.as_secs();
            let r = ingress.refuse(&path, Rejection::Timeout { secs });
            return json_response(r.status, r.body);
        }
    };
    let req = Request {
        id,
        method,
        path,
        headers,
        peer: Some(peer.ip()),
        body,
    };
    let resp = ingress.handle(req, now_ms()).await;
    json_response(resp.status, resp.body)
}

/// `GET /metrics`: the running totals in Prometheus text format, for the clients the
/// operator endpoints answer.
async fn metrics(
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refused(&serve, &peer, &Method::GET, &headers) {
        return refusal;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::prometheus(),
    )
        .into_response()
}

/// `GET /deliveries`: what [`DeliveryFilter`] takes, `since` in epoch milliseconds.
#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    status: Option<String>,
    source: Option<String>,
    connector: Option<String>,
    since: Option<Millis>,
}

#[derive(Deserialize)]
struct IdQuery {
    id: String,
}

/// This server's names as a client on this machine writes them in `Host`, and `configured`.
fn own_hosts(addr: SocketAddr, configured: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect();
    if !addr.ip().is_unspecified() {
        hosts.push(addr.to_string());
    }
    if port == 80 {
        let bare: Vec<String> = hosts
            .iter()
            .map(|h| h.trim_end_matches(":80").to_owned())
            .collect();
        hosts.extend(bare);
    }
    hosts.extend(configured.iter().map(|h| h.to_ascii_lowercase()));
    hosts
}

/// The operator endpoints answer clients on this machine, or anyone with the operator token
/// when one is set (then loopback needs it too). Without the token, a browser on this machine
/// must not be made to act for a web page: the `Host` must be one of this server's own
/// addresses (a page's name pointed at 127.0.0.1 is not), and a request that changes anything
/// must be JSON (a page cannot send that across sites without asking first) with no `Origin`
/// or this server's own. `Some`: the refusal to send.
fn refused(
    serve: &Serve,
    peer: &SocketAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
    match &serve.operator_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                return Some(error_json(
                    StatusCode::UNAUTHORIZED,
                    "send Authorization: Bearer <server.operator_token>",
                ));
            }
        }
        None if !peer.ip().is_loopback() => {
            return Some(error_json(
                StatusCode::FORBIDDEN,
                "the operator endpoints (/deliveries, /events, /status, /metrics) answer only clients on this machine; set server.operator_token to allow others",
            ));
        }
        None => return cross_site(serve, method, headers),
    }
    None
}

/// Why a tokenless operator request may come from a web page, if it may.
fn cross_site(serve: &Serve, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or("").to_ascii_lowercase();
    if !serve.hosts.contains(&host) {
        return Some(error_json(
            StatusCode::FORBIDDEN,
            &format!(
                "Host {} is not this server: the operator endpoints answer requests to {} (or a \
                 name in server.hosts), or with the operator token",
                LogId(&crate::logging::escape(&host)),
                serve.hosts.first().map_or("", String::as_str)
            ),
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let json = text(header::CONTENT_TYPE)
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(error_json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json (a form post could come from any web page)",
        ));
    }
    match text(header::ORIGIN) {
        None => None,
        Some(origin) if origin.eq_ignore_ascii_case(&format!("http://{host}")) => None,
        Some(_) => Some(error_json(
            StatusCode::FORBIDDEN,
            "a request from another site's page is refused: the operator endpoints take no cross-site requests",
        )),
    }
}

/// An operator endpoint's query, once the caller may read: or the answer to give instead.
fn operator_query<T>(
    serve: &Serve,
    peer: &SocketAddr,
    headers: &HeaderMap,
    q: Result<Query<T>, QueryRejection>,
) -> Result<T, Box<Response>> {
    if let Some(r) = refused(serve, peer, &Method::GET, headers) {
        return Err(Box::new(r));
    }
    q.map(|Query(q)| q).map_err(|e| Box::new(bad_query(e)))
}

/// A query string that does not fit the endpoint: 400 in JSON, like every answer.
fn bad_query(e: QueryRejection) -> Response {
    error_json(StatusCode::BAD_REQUEST, &e.body_text())
}

/// An operator action's answer: the delivery, or what went wrong with the status that fits.
fn operated(result: Result<Delivery, OperatorError>) -> Response {
    let status = match &result {
        Ok(d) => return Json(d).into_response(),
        Err(OperatorError::BadId(_)) => StatusCode::BAD_REQUEST,
        Err(OperatorError::NotFound(_)) => StatusCode::NOT_FOUND,
        Err(OperatorError::Refused(_)) => StatusCode::CONFLICT,
        Err(OperatorError::Failed(_)) => StatusCode::BAD_GATEWAY,
        Err(OperatorError::Store(e)) => {
            let id = request_id();
            error!(request = %id, error = %e, "operator request failed in the store");
            return error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the store is unavailable (request id {id})"),
            );
        }
    };
    error_json(
        status,
        &result.err().map(|e| e.to_string()).unwrap_or_default(),
    )
}

async fn deliveries(
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match operator_query(&serve, &peer, &headers, q) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let status = match q.status.as_deref().map(str::parse::<Status>).transpose() {
        Ok(s) => s,
        Err(e) => return error_json(StatusCode::BAD_REQUEST, &e),
    };
    let filter = DeliveryFilter {
        status,
        source: q.source,
        connector: q.connector,
        since: q.since,
    };
    match serve.app.store.list(&filter, q.limit.unwrap_or(100)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => operated(Err(e.into())),
    }
}

/// `GET /events`: what [`EventFilter`] takes, `since` in epoch milliseconds.
#[derive(Deserialize)]
struct EventQuery {
    limit: Option<usize>,
    source: Option<String>,
    kind: Option<String>,
    key: Option<String>,
    since: Option<Millis>,
}

async fn events(
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Response {
    let q = match operator_query(&serve, &peer, &headers, q) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let filter = EventFilter {
        source: q.source,
        kind: q.kind,
        key: q.key,
        since: q.since,
    };
    match serve
        .app
        .store
        .events(&filter, q.limit.unwrap_or(100))
        .await
    {
        Ok(list) => Json(list).into_response(),
        Err(e) => operated(Err(e.into())),
    }
}

#[derive(Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

/// `GET /status`: the API calls counted against quotas in a month (default: this one).
async fn status(
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<MonthQuery>, QueryRejection>,
) -> Response {
    let q = match operator_query(&serve, &peer, &headers, q) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let month = q.month.unwrap_or_else(|| beijing_month(now_ms()));
    match serve.app.store.usage_in(&month).await {
        Ok(usage) => Json(usage).into_response(),
        Err(e) => operated(Err(e.into())),
    }
}

/// What an operator asks of one delivery (`?id=<pk>/<sk>`).
#[derive(Clone, Copy)]
enum ById {
    Show,
    Replay,
    Recall,
}

async fn by_id(
    action: ById,
    State(serve): State<Arc<Serve>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    q: Result<Query<IdQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = refused(&serve, &peer, &method, &headers) {
        return r;
    }
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e),
    };
    let result = async {
        let key = operator::parse_id(&q.id)?;
        let store = serve.app.store.as_ref();
        match action {
            ById::Show => operator::show(store, &key).await,
            ById::Replay => {
                let replayed = operator::replay(store, &key, now_ms()).await;
                info!(delivery = %key, ok = replayed.is_ok(), "replay asked by an operator");
                replayed
            }
            ById::Recall => {
                let recalled = operator::recall(&serve.app, &key, now_ms()).await;
                info!(delivery = %key, ok = recalled.is_ok(), "recall asked by an operator");
                recalled
            }
        }
    };
    operated(result.await)
}

/// A running local pipeline (also what the end-to-end tests start).
pub struct Local {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    senders: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
}

impl Local {
    /// Binds `config.server.listen` (port 0 picks a free one) and starts the server, the
    /// senders and the sweeper in the background.
    pub async fn start(config: Config) -> Result<Local, Box<dyn std::error::Error + Send + Sync>> {
        let (store, feed) = MemoryStore::with_feed();
        Local::launch(config, store, feed).await
    }

    /// [`Local::start`] on the data file at `path`: every acknowledged request is on disk, and
    /// what a crash interrupted is picked up at start.
    pub async fn start_durable(
        config: Config,
        path: &std::path::Path,
    ) -> Result<Local, Box<dyn std::error::Error + Send + Sync>> {
        let (store, feed) = MemoryStore::durable(path)?;
        Local::launch(config, store, feed).await
    }

    async fn launch(
        config: Config,
        store: MemoryStore,
        feed: tokio::sync::mpsc::UnboundedReceiver<crate::event::DeliveryKey>,
    ) -> Result<Local, Box<dyn std::error::Error + Send + Sync>> {
        let server = config.server.clone();
        let listener = TcpListener::bind(&server.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", server.listen))?;
        let addr = listener.local_addr()?;
        let secrets = Secrets::default();
        let operator_token = match &server.operator_token {
            Some(r) => Some(secrets.resolve(r).await?),
            None => None,
        };
        let retention = config.store.retention();
        let store = Arc::new(store);
        let app = Arc::new(App::build(config, store.clone(), &secrets, Parts::All).await?);
        let (stop, stopped) = watch::channel(false);
        let routes = router(app.clone(), &server, operator_token, addr);
        let senders = tokio::spawn(app.sender.clone().run_feed(
            feed,
            server.sender_concurrency,
            stopped.clone(),
        ));
        let sweeper = app.clone();
        let every = Duration::from_secs(server.sweep_interval_secs.max(1));
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut purged: Option<Instant> = None;
            loop {
                tick.tick().await;
                let now = now_ms();
                if let Err(e) = sweep(sweeper.store.as_ref(), now, 100, None).await {
                    error!(error = %e, "sweep failed");
                }
                crate::connectors::flush_calls().await;
                if purged.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                    purged = Some(Instant::now());
                    match store.purge(now, retention) {
                        Ok(0) => {}
                        Ok(items) => info!(items, "items past store.retention_days removed"),
                        Err(e) => error!(error = %e, "removing expired items failed"),
                    }
                }
            }
        });
        let server = tokio::spawn(accept(listener, routes, server, stopped));
        Ok(Local {
            app,
            addr,
            stop,
            server: Some(server),
            senders: Some(senders),
            sweeper,
        })
    }

    pub fn webhook_urls(&self) -> Vec<String> {
        self.app
            .ingress
            .paths()
            .iter()
            .map(|p| format!("http://{}{p}", self.addr))
            .collect()
    }

    /// Stops accepting connections, lets the requests and sends in flight finish, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.sweeper.abort();
        for task in [self.server.take(), self.senders.take()]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
        crate::connectors::flush_calls().await;
        info!("stopped");
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.sweeper.abort();
        for task in [&self.server, &self.senders].into_iter().flatten() {
            task.abort();
        }
    }
}

/// Accepts connections until `stop`, each served with the header deadline and a place among
/// `max_connections`; then waits (up to [`DRAIN`]) for the requests in flight.
async fn accept(
    listener: TcpListener,
    router: Router,
    limits: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs.max(1)));
    loop {
        let place = tokio::select! {
            p = places.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = until_stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = until_stopped(&mut stop) => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, %peer, "connection ended");
            }
            drop(place);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "requests still in flight after {} s were cut off",
            DRAIN.as_secs()
        );
    }
}
