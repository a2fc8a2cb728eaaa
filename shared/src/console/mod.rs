//! The operator console: server-rendered pages over the store (overview, events, deliveries,
//! one event, one delivery), replay and recall, and a template preview that sends nothing.
//! `serve` hosts it at `/console`; `hookbridge console --table T` serves the same pages on
//! 127.0.0.1 against the stack's table, so the stack has no new public surface.
//!
//! Who may use it is [`Guard`]'s: without an operator token, clients on this machine whose
//! `Host` is this server's; with one, whoever sends it (as a bearer token or the cookie the
//! login form sets). A change is a form post carrying this process's CSRF token, from no
//! `Origin` or this server's own: another site's page can neither read the token nor post
//! with it. Every value from a request or the store is escaped by the templates.

mod text;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::Environment;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::event::{Delivery, DeliveryFilter, EventFilter, Millis, Status, beijing_month, now_ms};
use crate::operator::{self, OperatorError, beijing_time};
use crate::store::DeliveryStore;

/// Rows a list page shows.
const PAGE: usize = 50;

/// Who may use the console (see the module's words).
pub struct Guard {
    pub token: Option<String>,
    /// The `Host` values a tokenless request may carry, lowercase.
    pub hosts: Vec<String>,
}

impl Guard {
    /// A console on this machine only: no token, the loopback names of `addr` as its hosts.
    pub fn local(addr: SocketAddr) -> Guard {
        let port = addr.port();
        Guard {
            token: None,
            hosts: ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .map(|h| format!("{h}:{port}"))
                .collect(),
        }
    }
}

pub struct Console {
    app: Arc<App>,
    guard: Guard,
    /// This process's CSRF token, in every form.
    csrf: String,
    templates: Environment<'static>,
    /// The stack's CloudWatch dashboard, when the console knows the stack.
    dashboard: Option<String>,
}

/// 128 bits from the OS's randomness (the keys `RandomState` is seeded with), as hex.
fn secret() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    (0..2u8)
        .map(|i| format!("{:016x}", state.hash_one(i)))
        .collect()
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("pages.html", include_str!("templates/pages.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("events.html", include_str!("templates/events.html")),
        ("event.html", include_str!("templates/event.html")),
        ("deliveries.html", include_str!("templates/deliveries.html")),
        ("delivery.html", include_str!("templates/delivery.html")),
        ("preview.html", include_str!("templates/preview.html")),
        ("login.html", include_str!("templates/login.html")),
        ("test.html", include_str!("templates/test.html")),
        ("recall.html", include_str!("templates/recall.html")),
    ] {
        env.add_template(name, source)
            .expect("the console's templates compile (a test renders each)");
    }
    env
}

/// The console's routes, all under `/console`.
pub fn router(app: Arc<App>, guard: Guard, dashboard: Option<String>) -> Router {
    let console = Arc::new(Console {
        app,
        guard,
        csrf: secret(),
        templates: templates(),
        dashboard,
    });
    Router::new()
        .route("/console", get(overview))
        .route("/console/", get(overview))
        .route("/console/events", get(events))
        .route("/console/event", get(event))
        .route("/console/deliveries", get(deliveries))
        .route("/console/delivery", get(delivery))
        .route("/console/replay", axum::routing::post(replay))
        .route("/console/recall", axum::routing::post(recall))
        .route("/console/preview", get(preview_form).post(preview))
        .route("/console/test", axum::routing::post(test_send))
        .route("/console/login", axum::routing::post(login))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        .route("/console/icon.svg", get(icon))
        .with_state(console)
}

// ---- requests: who asks, in which language, with what ----

/// One request as the pages need it.
struct Asked {
    lang: &'static str,
    /// `lang` when the query set it: remembered in a cookie.
    chosen: bool,
    query: BTreeMap<String, String>,
}

fn parse_pairs(text: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

impl Console {
    fn asked(&self, headers: &HeaderMap, query: Option<String>) -> Asked {
        let query = parse_pairs(query.as_deref().unwrap_or(""));
        let from_query = query.get("lang").map(String::as_str);
        let wanted = from_query
            .or_else(|| cookie(headers, "hb_lang"))
            .or_else(|| {
                let accept = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
                accept.trim_start().starts_with("en").then_some("en")
            });
        let lang = if wanted == Some("en") { "en" } else { "zh" };
        Asked {
            lang,
            chosen: from_query.is_some(),
            query,
        }
    }

    /// `None`: the request may read; else the answer to give instead.
    fn refuse_read(
        &self,
        peer: &SocketAddr,
        headers: &HeaderMap,
        lang: &'static str,
    ) -> Option<Response> {
        let denied = |status, why: &str| Some(self.plain(status, lang, why));
        match &self.guard.token {
            Some(token) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .or_else(|| cookie(headers, "hb_operator"))
                    .unwrap_or("");
                if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                    return None;
                }
                let t = text::table(lang);
                let page = self.render("login.html", &t["login"], lang, json!({}));
                Some((StatusCode::UNAUTHORIZED, page).into_response())
            }
            None if !peer.ip().is_loopback() => denied(
                StatusCode::FORBIDDEN,
                "the console answers only clients on this machine; set server.operator_token to allow others",
            ),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if self.guard.hosts.contains(&host) {
                    None
                } else {
                    denied(
                        StatusCode::FORBIDDEN,
                        "this Host is not this server: open the console at the address serve listens on",
                    )
                }
            }
        }
    }

    /// `None`: the form may change something; else the refusal.
    fn refuse_change(
        &self,
        peer: &SocketAddr,
        headers: &HeaderMap,
        form: &BTreeMap<String, String>,
        lang: &'static str,
    ) -> Option<Response> {
        if let Some(r) = self.refuse_read(peer, headers, lang) {
            return Some(r);
        }
        let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let host = header_text("host").unwrap_or("");
        let same_origin = match header_text("origin") {
            None => true,
            Some(origin) => {
                origin.eq_ignore_ascii_case(&format!("http://{host}"))
                    || origin.eq_ignore_ascii_case(&format!("https://{host}"))
            }
        };
        let cross_site = header_text("sec-fetch-site").is_some_and(|s| s == "cross-site");
        let token = form.get("csrf").map(String::as_str).unwrap_or("");
        let csrf_ok = bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()));
        if same_origin && !cross_site && csrf_ok {
            return None;
        }
        Some(self.plain(
            StatusCode::FORBIDDEN,
            lang,
            "refused: a change must come from a form of this console (another site's page cannot make one)",
        ))
    }

    // ---- answers ----

    fn render(&self, name: &str, title: &Value, lang: &'static str, ctx: Value) -> String {
        let mut ctx = ctx;
        ctx["t"] = text::table(lang);
        ctx["title"] = title.clone();
        ctx["csrf"] = json!(self.csrf);
        self.templates
            .get_template(name)
            .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
            .unwrap_or_else(|e| format!("the console could not render {name}: {e}"))
    }

    fn page(&self, asked: &Asked, name: &str, title_key: &str, ctx: Value) -> Response {
        let t = text::table(asked.lang);
        let mut ctx = ctx;
        if let Some(done) = asked.query.get("done") {
            let n = asked.query.get("n").map(String::as_str).unwrap_or("");
            ctx["notice"] = json!(format!("{} {n}", t["done"][done].as_str().unwrap_or("")).trim());
        }
        let body = self.render(name, &t[title_key], asked.lang, ctx);
        let mut response =
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
        let headers = response.headers_mut();
        // No framing by other sites, no scripts but the console's own.
        headers.insert("x-frame-options", "DENY".parse().expect("a header value"));
        headers.insert(
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
                .parse()
                .expect("a header value"),
        );
        if asked.chosen {
            let cookie = format!("hb_lang={}; Path=/console; SameSite=Strict", asked.lang);
            headers.insert(header::SET_COOKIE, cookie.parse().expect("a header value"));
        }
        response
    }

    fn plain(&self, status: StatusCode, lang: &'static str, why: &str) -> Response {
        let t = text::table(lang);
        let body = self.render(
            "login.html",
            &t["refused"],
            lang,
            json!({ "problem": why, "no_form": true }),
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }

    /// After an operator's action on delivery `id`: its page saying `done`, or why not.
    fn acted(
        &self,
        asked: &Asked,
        id: &str,
        done: Result<(), OperatorError>,
        word: &str,
    ) -> Response {
        match done {
            Ok(()) => see(&format!("/console/delivery?id={}&done={word}", encode(id))),
            Err(e) => self.plain(StatusCode::CONFLICT, asked.lang, &e.to_string()),
        }
    }

    fn problem(&self, asked: &Asked, e: &dyn std::fmt::Display) -> Response {
        let t = text::table(asked.lang);
        let body = self.render(
            "login.html",
            &t["refused"],
            asked.lang,
            json!({ "problem": e.to_string(), "no_form": true }),
        );
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// A 303 to `to`: the browser shows the page the change led to, and a reload does not post
/// again.
fn see(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// What a list row shows of a delivery.
fn row(d: &Delivery) -> Value {
    json!({
        "id": d.key().to_string(),
        "sk": d.sk,
        "updated": beijing_time(d.updated_at),
        "status": d.status.as_str(),
        "connector": d.connector,
        "recipients": d.recipients.join(", "),
        "why": why(d),
    })
}

/// Why a delivery is where it is, in a line.
fn why(d: &Delivery) -> String {
    let note = d
        .result
        .as_ref()
        .and_then(|r| r["note"].as_str())
        .map(str::to_owned);
    d.last_error.clone().or(note).unwrap_or_default()
}

fn page_of(asked: &Asked) -> usize {
    asked
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

/// The query again without `page`, for the pages' links.
fn query_without_page(asked: &Asked) -> String {
    asked
        .query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "page" | "done" | "n" | "lang"))
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---- pages ----

type Peer = ConnectInfo<SocketAddr>;

macro_rules! guarded {
    ($c:ident, $peer:ident, $headers:ident, $q:ident) => {{
        let asked = $c.asked(&$headers, $q);
        if let Some(r) = $c.refuse_read(&$peer.0, &$headers, asked.lang) {
            return r;
        }
        asked
    }};
}

/// A form post that may change something: who asks and what the form says, or the refusal.
macro_rules! posted {
    ($c:ident, $peer:ident, $headers:ident, $q:ident, $body:ident) => {{
        let asked = $c.asked(&$headers, $q);
        let form = parse_pairs(&String::from_utf8_lossy(&$body));
        if let Some(r) = $c.refuse_change(&$peer.0, &$headers, &form, asked.lang) {
            return r;
        }
        (asked, form)
    }};
}

async fn overview(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let now = now_ms();
    let week = now - 7 * 86_400_000;
    let store = c.app.store.as_ref();
    let since = |t| DeliveryFilter {
        since: Some(t),
        ..Default::default()
    };
    let (event_filter, delivery_filter) = (
        EventFilter {
            since: Some(week),
            ..Default::default()
        },
        since(week),
    );
    let month = beijing_month(now);
    let (events, deliveries, usage) = match tokio::try_join!(
        store.events(&event_filter, usize::MAX),
        store.list(&delivery_filter, usize::MAX),
        store.usage_in(&month),
    ) {
        Ok(found) => found,
        Err(e) => return c.problem(&asked, &e),
    };
    let t = text::table(asked.lang);
    let windows: Vec<(Value, Millis)> = [
        ("hour", 3_600_000),
        ("day", 86_400_000),
        ("week", 7 * 86_400_000),
    ]
    .into_iter()
    .map(|(k, ms)| (t["windows"][k].clone(), now - ms))
    .collect();
    let in_window = |at: Millis, from: Millis| at >= from;
    let count = |pick: &dyn Fn(&Delivery) -> bool| -> Vec<usize> {
        windows
            .iter()
            .map(|(_, from)| {
                deliveries
                    .iter()
                    .filter(|d| in_window(d.updated_at, *from) && pick(d))
                    .count()
            })
            .collect()
    };
    let received: Vec<usize> = windows
        .iter()
        .map(|(_, from)| events.iter().filter(|e| e.received_at >= *from).count())
        .collect();
    let with_delivery: std::collections::HashSet<&str> =
        deliveries.iter().map(|d| d.pk.as_str()).collect();
    let no_delivery: Vec<usize> = windows
        .iter()
        .map(|(_, from)| {
            events
                .iter()
                .filter(|e| e.received_at >= *from)
                .filter(|e| !with_delivery.contains(e.pk().as_str()))
                .count()
        })
        .collect();
    let rows = vec![
        json!({ "name": t["received"], "counts": received }),
        json!({ "name": t["made_no_delivery"], "counts": no_delivery }),
        json!({ "name": t["delivered"], "counts": count(&|d| matches!(d.status, Status::Sent | Status::Checking)) }),
        json!({ "name": t["in_flight"], "counts": count(&|d| !d.status.is_final()) }),
        json!({ "name": t["dry_run"], "counts": count(&|d| d.status == Status::DryRun) }),
        json!({ "name": t["undelivered"], "counts": count(&|d| d.status == Status::Undelivered) }),
        json!({ "name": t["dead"], "counts": count(&|d| d.status == Status::Dead) }),
        json!({ "name": t["recalled"], "counts": count(&|d| d.status == Status::Recalled) }),
    ];
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let day = now - 86_400_000;
    let mut parts: Vec<Value> = vec![];
    for (filter, name_of) in [
        (
            "source",
            (|d: &Delivery| d.source().to_owned()) as fn(&Delivery) -> String,
        ),
        ("connector", |d: &Delivery| d.connector.clone()),
    ] {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for d in deliveries.iter().filter(|d| d.updated_at >= day) {
            let counts = by
                .entry(name_of(d))
                .or_insert_with(|| vec![0; statuses.len()]);
            if let Some(i) = Status::ALL.iter().position(|s| *s == d.status) {
                counts[i] += 1;
            }
        }
        parts.extend(
            by.into_iter()
                .map(|(name, counts)| json!({ "name": name, "filter": filter, "counts": counts })),
        );
    }
    let mut attention = vec![];
    let dead = deliveries
        .iter()
        .filter(|d| d.status == Status::Dead)
        .count();
    if dead > 0 {
        attention.push(json!({ "text": format!("{dead} {}", t["dead_ones"].as_str().unwrap_or("")), "link": "/console/deliveries?status=dead" }));
    }
    let undelivered = deliveries
        .iter()
        .filter(|d| d.status == Status::Undelivered)
        .count();
    if undelivered > 0 {
        attention.push(json!({ "text": format!("{undelivered} {}", t["undelivered_ones"].as_str().unwrap_or("")), "link": "/console/deliveries?status=undelivered" }));
    }
    let usage: Vec<Value> = usage
        .iter()
        .map(|u| {
            let used = u.calls * 100 / u.quota.max(1);
            if u.quota > 0 && used >= 80 {
                attention.push(json!({ "text": format!("{}: {used} % {}", u.name, t["of_quota"].as_str().unwrap_or("")), "link": "/console" }));
            }
            json!({ "name": u.name, "calls": u.calls, "quota": u.quota, "used": used })
        })
        .collect();
    let windows: Vec<Value> = windows
        .into_iter()
        .map(|(name, _)| json!({ "name": name }))
        .collect();
    // What this process answered but stored nothing of: refused requests (by source and
    // reason) and repeats. Kept in memory by `serve`; on AWS the dashboard has them.
    let answered: Vec<Value> = [
        (&crate::metrics::REJECTED, &t["rejected"]),
        (&crate::metrics::DUPLICATES, &t["duplicates"]),
    ]
    .into_iter()
    .flat_map(|(metric, what)| {
        crate::metrics::sums(metric)
            .into_iter()
            .map(move |(labels, n)| json!({ "what": what, "labels": labels, "n": n as u64 }))
    })
    .collect();
    c.page(
        &asked,
        "overview.html",
        "overview",
        json!({
            "windows": windows, "rows": rows, "statuses": statuses, "parts": parts,
            "usage": usage, "attention": attention, "month": beijing_month(now),
            "answered": answered,
            "dashboard": c.dashboard,
        }),
    )
}

async fn events(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let page = page_of(&asked);
    let within = asked.query.get("within").and_then(|w| match w.as_str() {
        "hour" => Some(3_600_000),
        "day" => Some(86_400_000),
        "week" => Some(7 * 86_400_000),
        _ => None,
    });
    let filter = EventFilter {
        source: asked.query.get("source").cloned(),
        kind: asked.query.get("kind").cloned(),
        key: asked.query.get("key").cloned(),
        since: within.map(|w: Millis| now_ms() - w),
    };
    let found = match c.app.store.events(&filter, page * PAGE + 1).await {
        Ok(found) => found,
        Err(e) => return c.problem(&asked, &e),
    };
    let more = found.len() > page * PAGE;
    let list: Vec<Value> = found
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(|e| {
            let head: String = e.raw.chars().take(80).collect();
            json!({
                "pk": e.pk(), "received": beijing_time(e.received_at), "source": e.source,
                "kind": e.kind, "key": e.key, "head": crate::logging::escape(&head),
            })
        })
        .collect();
    c.page(
        &asked,
        "events.html",
        "events",
        json!({
            "list": list, "filter": filter, "page": page, "more": more,
            "query": query_without_page(&asked), "within": asked.query.get("within"),
        }),
    )
}

async fn event(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let pk = asked.query.get("pk").cloned().unwrap_or_default();
    let store = c.app.store.as_ref();
    let (found, deliveries) = match tokio::try_join!(store.event(&pk), store.deliveries_of(&pk)) {
        Ok(both) => both,
        Err(e) => return c.problem(&asked, &e),
    };
    let list: Vec<Value> = deliveries.iter().map(row).collect();
    let body = found
        .as_ref()
        .map(|e| match serde_json::from_str::<Value>(&e.raw) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => crate::logging::escape(&e.raw),
        })
        .unwrap_or_default();
    c.page(
        &asked,
        "event.html",
        "event",
        json!({
            "event": found.as_ref().map(|e| json!({ "source": e.source, "kind": e.kind })),
            "received": found.as_ref().map(|e| beijing_time(e.received_at)),
            "body": body, "list": list,
        }),
    )
}

async fn deliveries(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let page = page_of(&asked);
    let filter = DeliveryFilter {
        status: asked.query.get("status").and_then(|s| s.parse().ok()),
        source: asked.query.get("source").cloned(),
        connector: asked.query.get("connector").cloned(),
        since: None,
    };
    let found = match c.app.store.list(&filter, page * PAGE + 1).await {
        Ok(found) => found,
        Err(e) => return c.problem(&asked, &e),
    };
    let more = found.len() > page * PAGE;
    let list: Vec<Value> = found
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(row)
        .collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    c.page(
        &asked,
        "deliveries.html",
        "deliveries",
        json!({
            "list": list, "statuses": statuses, "page": page, "more": more,
            "query": query_without_page(&asked),
            "filter": { "status": filter.status.map(Status::as_str), "source": filter.source, "connector": filter.connector },
        }),
    )
}

async fn delivery(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let id = asked.query.get("id").cloned().unwrap_or_default();
    let store: &dyn DeliveryStore = c.app.store.as_ref();
    let d = match operator::parse_id(&id) {
        Ok(key) => operator::show(store, &key).await,
        Err(e) => Err(e),
    };
    let d = match d {
        Ok(d) => d,
        Err(OperatorError::Store(e)) => return c.problem(&asked, &e),
        Err(e) => return c.plain(StatusCode::NOT_FOUND, asked.lang, &e.to_string()),
    };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let t = text::table(asked.lang);
    // What happened to it, in order: created, each attempt's answer, replays, receipts.
    let word = |k: &str| t[k].as_str().unwrap_or("").to_owned();
    let mut steps: Vec<(Millis, String)> = vec![(d.created_at, word("created"))];
    for (n, a) in d.answers.iter().enumerate() {
        let said = a
            .said
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        steps.push((
            a.at,
            format!(
                "{} {} → {}{said}",
                word("attempt"),
                n + 1,
                a.status.as_str()
            ),
        ));
    }
    for r in &d.replays {
        let error = r.error.as_deref().unwrap_or("");
        steps.push((
            r.at,
            format!(
                "{} ({} {}: {error})",
                word("replayed"),
                r.attempts,
                word("attempts")
            ),
        ));
    }
    for receipt in &d.receipts {
        if let Some(at) = receipt["at"].as_i64() {
            steps.push((
                at,
                receipt["status"].as_str().unwrap_or("receipt").to_owned(),
            ));
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    let mut timeline: Vec<Value> = steps
        .into_iter()
        .map(|(at, what)| json!({ "at": beijing_time(at), "what": what }))
        .collect();
    timeline.push(json!({ "at": beijing_time(d.updated_at), "what": d.status.as_str() }));
    let outcomes: Vec<Value> = d
        .result
        .as_ref()
        .and_then(|r| r["outcomes"].as_object())
        .map(|o| {
            o.iter()
                .map(|(who, what)| json!({ "who": who, "what": what.as_str().unwrap_or("") }))
                .collect()
        })
        .unwrap_or_default();
    let receipts = (!d.receipts.is_empty()).then(|| pretty(&json!(d.receipts)));
    c.page(
        &asked,
        "delivery.html",
        "delivery",
        json!({
            "d": d, "id": id, "why": why(&d), "timeline": timeline,
            "request": pretty(&d.message), "result": d.result.as_ref().map(pretty),
            "outcomes": outcomes, "receipts": receipts,
        }),
    )
}

// ---- changes ----

async fn replay(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (asked, form) = posted!(c, peer, headers, q, body);
    let store: &dyn DeliveryStore = c.app.store.as_ref();
    if form.contains_key("all") {
        let filter = DeliveryFilter {
            status: Some(Status::Dead),
            source: form.get("source").cloned(),
            connector: form.get("connector").cloned(),
            since: None,
        };
        let dead = match store.list(&filter, usize::MAX).await {
            Ok(dead) => dead,
            Err(e) => return c.problem(&asked, &e),
        };
        let mut replayed = 0;
        for d in &dead {
            if operator::replay(store, &d.key(), now_ms()).await.is_ok() {
                replayed += 1;
            }
        }
        return see(&format!(
            "/console/deliveries?status=dead&done=replayed_all&n={replayed}"
        ));
    }
    let id = form.get("id").cloned().unwrap_or_default();
    let done = match operator::parse_id(&id) {
        Ok(key) => operator::replay(store, &key, now_ms()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    c.acted(&asked, &id, done, "replayed")
}

async fn recall(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (asked, form) = posted!(c, peer, headers, q, body);
    let id = form.get("id").cloned().unwrap_or_default();
    // Asked once more, in a page of its own (no script needed): a recall cannot be undone.
    if form.get("confirm").map(String::as_str) != Some("1") {
        return c.page(&asked, "recall.html", "recall", json!({ "id": id }));
    }
    let done = match operator::parse_id(&id) {
        Ok(key) => operator::recall(&c.app, &key, now_ms()).await.map(|_| ()),
        Err(e) => Err(e),
    };
    c.acted(&asked, &id, done, "recalled")
}

async fn login(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let asked = c.asked(&headers, q);
    let form = parse_pairs(&String::from_utf8_lossy(&body));
    let given = form.get("token").map(String::as_str).unwrap_or("");
    match &c.guard.token {
        Some(token) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            let cookie = format!("hb_operator={given}; Path=/console; HttpOnly; SameSite=Strict");
            let mut r = see("/console");
            r.headers_mut()
                .insert(header::SET_COOKIE, cookie.parse().expect("a header value"));
            r
        }
        _ => c.plain(
            StatusCode::UNAUTHORIZED,
            asked.lang,
            "that is not the operator token",
        ),
    }
}

// ---- the preview: what each connector would send, with nothing sent ----

/// Sample bodies to start a preview from: each source's own, as the tests post them (name,
/// webhook path, body).
pub const SAMPLES: &[(&str, &str, &str)] = &[
    (
        "hap-message-todo",
        "/hap/message",
        include_str!("../../../tests/fixtures/hap-message-todo.json"),
    ),
    (
        "hap-message-mention",
        "/hap/message",
        include_str!("../../../tests/fixtures/hap-message-mention.json"),
    ),
    (
        "hap-finish-todo",
        "/hap/todo",
        include_str!("../../../tests/fixtures/hap-finish-todo.json"),
    ),
    (
        "dms-approval-pending",
        "/dms",
        include_str!("../../../tests/fixtures/dms-approval-pending.json"),
    ),
    (
        "alertmanager-firing",
        "/alertmanager",
        include_str!("../../../tests/fixtures/alertmanager-firing.json"),
    ),
    (
        "generic-gitlab-push",
        "/in/gitlab",
        include_str!("../../../tests/fixtures/generic-gitlab-push.json"),
    ),
];

async fn preview_form(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let asked = guarded!(c, peer, headers, q);
    let paths = c.app.ingress.paths();
    let (path, body) = asked
        .query
        .get("sample")
        .and_then(|name| SAMPLES.iter().find(|(n, ..)| n == name))
        .map_or(("", ""), |(_, path, body)| (*path, *body));
    let samples: Vec<&str> = SAMPLES
        .iter()
        .filter(|(_, path, _)| paths.contains(path))
        .map(|(name, ..)| *name)
        .collect();
    c.page(
        &asked,
        "preview.html",
        "preview",
        json!({ "paths": paths, "path": path, "body": body, "samples": samples }),
    )
}

async fn preview(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (asked, form) = posted!(c, peer, headers, q, body);
    let path = form.get("path").cloned();
    let text = form.get("body").cloned().unwrap_or_default();
    let paths = c.app.ingress.paths();
    let mut ctx = json!({ "paths": paths, "path": path, "body": text });
    match c
        .app
        .ingress
        .preview(path.as_deref(), text.as_bytes(), now_ms())
    {
        Ok((_, planned)) => {
            let rendered: Vec<Value> = planned
                .iter()
                .map(|d| {
                    json!({
                        "connector": d.connector, "action": d.action.as_str(),
                        "recipients": d.recipients.join(", "), "why": d.last_error,
                        "request": serde_json::to_string_pretty(&d.message).unwrap_or_default(),
                    })
                })
                .collect();
            ctx["rendered"] = json!(rendered);
        }
        Err(rejection) => ctx["problem"] = json!(rejection.to_string()),
    }
    c.page(&asked, "preview.html", "preview", ctx)
}

/// A test send to one person: the first post shows what would go to whom and asks again; the
/// second (`confirm`) sends it through the connector, stored nowhere. Only a route that sends to
/// the event's recipients can be tried: one with fixed users or a group would reach them.
async fn test_send(
    State(c): State<Arc<Console>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (asked, form) = posted!(c, peer, headers, q, body);
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (path, text, connector, to) = (
        field("path"),
        field("body"),
        field("connector"),
        field("to"),
    );
    let planned = c.app.ingress.preview_to(
        Some(&path).filter(|p| !p.is_empty()).map(String::as_str),
        text.as_bytes(),
        now_ms(),
        Some(to.as_str()),
    );
    let d = match planned {
        Ok((_, planned)) => planned
            .into_iter()
            .find(|d| d.connector == connector && d.action == crate::event::Action::Send),
        Err(e) => return c.plain(StatusCode::BAD_REQUEST, asked.lang, &e.to_string()),
    };
    let Some(d) = d.filter(|d| !to.is_empty() && d.recipients.len() == 1) else {
        return c.plain(
            StatusCode::CONFLICT,
            asked.lang,
            "no route sends this to the one person given: a test goes only through a route that sends to the event's recipients (not fixed users or a group)",
        );
    };
    let request = serde_json::to_string_pretty(&d.message).unwrap_or_default();
    let mut ctx = json!({
        "path": path, "body": text, "connector": connector, "to": to,
        "recipient": d.recipients.join(", "), "request": request,
    });
    if form.get("confirm").map(String::as_str) == Some("1") {
        let Some(sender) = c.app.sender.connector(&connector) else {
            return c.plain(
                StatusCode::CONFLICT,
                asked.lang,
                "that connector is not configured here",
            );
        };
        let outcome = sender.deliver(&d).await;
        tracing::info!(connector = %connector, to = %crate::logging::LogId(&to), outcome = ?outcome, "a test send asked by an operator");
        ctx["outcome"] = json!(format!("{outcome:?}"));
    }
    c.page(&asked, "test.html", "test_send", ctx)
}

// ---- assets, inside the binary ----

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("icon.svg"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
        .into_response()
}
