//! `hookbridge serve` as an HTTP server on the open network and as a sender under load: slow
//! clients, too many connections, exact paths, JSON answers for everything, the operator
//! endpoint, a throttled DingTalk and a stalled one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookbridge::event::Status;
use hookbridge::local::Local;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_zentao::{FakeZenTao, hap_route};
use hookbridge_tests::{HAP_TOKEN, config, fixture};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve(extra_server: &str, extra: &str) -> Local {
    let mut text = hookbridge_tests::config_text(None, extra);
    text = text.replace(
        "sweep_interval_secs = 1\n",
        &format!("sweep_interval_secs = 1\n{extra_server}\n"),
    );
    let config = hookbridge::config::Config::from_toml(&text).unwrap();
    Local::start(config).await.unwrap()
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = vec![];
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let local = serve("header_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(local.addr).await.unwrap();
    let request = b"POST /hap/message HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let started = Instant::now();
    let mut closed = false;
    // One byte every 100 ms would take minutes to finish the headers; the server must not wait.
    for b in request.iter().chain(std::iter::repeat(&b'a')).take(300) {
        if stream.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            closed = n == 0 || buf.starts_with(b"HTTP/1.1 408");
            if closed {
                break;
            }
        }
    }
    assert!(closed, "the connection was still open after 30 s");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_a_408_in_the_source_format() {
    let local = serve("body_timeout_secs = 1", "").await;
    let mut stream = TcpStream::connect(local.addr).await.unwrap();
    let head = format!(
        "POST /hap/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Hookbridge-Token: {HAP_TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"messageId\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(20))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["success"], false);
    assert!(
        body["error"].as_str().unwrap().contains("within 1 s"),
        "{body}"
    );
    assert!(local.app.store.recent(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_place() {
    let local = serve("max_connections = 2\nheader_timeout_secs = 30", "").await;
    let idle = [
        TcpStream::connect(local.addr).await.unwrap(),
        TcpStream::connect(local.addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = hookbridge_tests::http_client();
    let health = format!("http://{}/healthz", local.addr);
    let blocked = client
        .get(&health)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        blocked.is_err(),
        "a third connection was served: {blocked:?}"
    );
    drop(idle);
    let resp = client
        .get(&health)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn every_answer_is_json_and_paths_match_exactly() {
    let dms = "[sources.dms]\nmax_body_bytes = 64\n";
    let local = serve("", dms).await;
    let client = hookbridge_tests::http_client();
    let base = format!("http://{}", local.addr);
    let big = "x".repeat(100);
    for (method, path, body, status, field, want) in [
        (
            "POST",
            "/anything/hap/message",
            "{}",
            404,
            "error",
            "POST /hap/message",
        ),
        (
            "POST",
            "/hap/message/",
            "{}",
            404,
            "error",
            "POST /hap/message",
        ),
        ("POST", "/", "{}", 404, "error", "POST /hap/todo"),
        ("GET", "/nowhere", "", 404, "error", "POST /dms"),
        ("GET", "/hap/message", "", 405, "error", "webhooks are POST"),
        ("PUT", "/dms", "", 405, "root", "webhooks are POST"),
        (
            "POST",
            "/dms",
            big.as_str(),
            413,
            "root",
            "the limit is 64 bytes",
        ),
        ("DELETE", "/deliveries", "", 405, "error", "GET /deliveries"),
        ("POST", "/healthz", "", 405, "error", "GET /healthz"),
    ] {
        let resp = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("X-Hookbridge-Token", HAP_TOKEN)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["success"], false, "{method} {path}");
        assert!(
            answer[field].as_str().unwrap().contains(want),
            "{method} {path}: {answer}"
        );
    }
    assert!(local.app.store.recent(10).await.unwrap().is_empty());
}

/// What the HTTP library refuses before a request reaches hookbridge is answered by the library
/// itself, with no body: docs/serve.md lists these answers, and this keeps the list true.
#[tokio::test]
async fn what_the_http_layer_refuses_has_the_documented_bare_answers() {
    let local = serve("", "").await;
    let headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "v".repeat(1 << 20));
    for (request, status) in [
        ("GARBAGE\r\n\r\n".to_owned(), "400"),
        (
            "POST /hap/message HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_owned(),
            "400",
        ),
        ("GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".to_owned(), "400"),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n"), "431"),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n{big}\r\n"), "431"),
    ] {
        let mut stream = TcpStream::connect(local.addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = read_to_close(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_default();
        let head = answer.lines().next().unwrap_or("");
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head:?} for {:.40?}", request);
        assert!(
            answer.to_ascii_lowercase().contains("content-length: 0") && !answer.contains('{'),
            "no body: {answer:?}"
        );
    }
}

/// `/deliveries` through the real routes with a given peer address (no traffic leaves loopback).
async fn deliveries_as(peer: &str, token: Option<&str>, auth: Option<&str>) -> (u16, Value) {
    operator_as("GET", "/deliveries", peer, token, auth).await
}

/// An operator endpoint through the real routes with a given peer address.
async fn operator_as(
    method: &str,
    uri: &str,
    peer: &str,
    token: Option<&str>,
    auth: Option<&str>,
) -> (u16, Value) {
    let local = serve("", "").await;
    let routes = hookbridge::local::router(
        local.app.clone(),
        &local.app.config.server,
        token.map(str::to_owned),
        local.addr,
    );
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", local.addr.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let (status, body) = as_peer(routes, req.body(axum::body::Body::empty()).unwrap(), peer).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// One request through `routes` as if from `peer`: its status and body.
async fn as_peer(
    routes: axum::Router,
    mut req: http::Request<axum::body::Body>,
    peer: &str,
) -> (u16, String) {
    use tower::ServiceExt;
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let resp = routes.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn deliveries_answer_loopback_only_unless_a_token_is_set() {
    assert_eq!(deliveries_as("127.0.0.1:5000", None, None).await.0, 200);
    assert_eq!(deliveries_as("[::1]:5000", None, None).await.0, 200);
    let (status, body) = deliveries_as("203.0.113.7:5000", None, None).await;
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("operator_token"));
    let token = Some("op-secret");
    let ok = Some("Bearer op-secret");
    assert_eq!(deliveries_as("203.0.113.7:5000", token, ok).await.0, 200);
    for wrong in [None, Some("Bearer op-secre"), Some("op-secret")] {
        assert_eq!(deliveries_as("203.0.113.7:5000", token, wrong).await.0, 401);
        assert_eq!(
            deliveries_as("127.0.0.1:5000", token, wrong).await.0,
            401,
            "with a token, loopback needs it too"
        );
    }
    // Every operator endpoint is behind the same check, before it reads its id.
    let id = "?id=EVT%23hap%23m1%2FDLV%23dingtalk%23000";
    for (method, path) in [
        ("GET", "/deliveries/show"),
        ("POST", "/deliveries/replay"),
        ("POST", "/deliveries/recall"),
    ] {
        let uri = format!("{path}{id}");
        let (status, _) = operator_as(method, &uri, "203.0.113.7:5000", None, None).await;
        assert_eq!(status, 403, "{method} {path}");
        let (status, _) = operator_as(method, &uri, "127.0.0.1:5000", token, None).await;
        assert_eq!(status, 401, "{method} {path}");
        let (status, body) = operator_as(method, &uri, "127.0.0.1:5000", token, ok).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    assert_eq!(
        operator_as("GET", "/status", "203.0.113.7:5000", None, None)
            .await
            .0,
        403
    );
    assert_eq!(
        operator_as("GET", "/status", "127.0.0.1:5000", token, None)
            .await
            .0,
        401
    );
    let (status, body) = operator_as("GET", "/status", "127.0.0.1:5000", token, ok).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!([])),
        "nothing counted yet"
    );
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_stops_accepting() {
    let local = serve("", "").await;
    let addr = local.addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = fixture("hap-message-mention.json");
    let head = format!(
        "POST /hap/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Hookbridge-Token: {HAP_TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let app = local.app.clone();
    let stopping = tokio::spawn(local.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "waits for the request in flight");
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(20))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("shutdown returns once the request is answered")
        .unwrap();
    assert_eq!(
        app.store.recent(10).await.unwrap().len(),
        1,
        "stored and delivered"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

fn zentao_route(url: &str) -> String {
    format!(
        "{}\n[delivery]\nbackoff_base_secs = 1\nbackoff_cap_secs = 2\n",
        hap_route(url)
    )
}

async fn post_messages(local: &Local, n: usize) {
    let client = hookbridge_tests::http_client();
    for i in 0..n {
        let body = json!({
            "messageId": format!("load-{i}"),
            "message": format!("第 {i} 条"),
            "messageTypeV2": 11,
            "targets": ["lisi"],
        });
        let resp = client
            .post(format!("http://{}/hap/message", local.addr))
            .header("X-Hookbridge-Token", HAP_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// Polls the store until `done` holds for the deliveries (bounded).
async fn until(local: &Local, what: &str, done: impl Fn(&[hookbridge::event::Delivery]) -> bool) {
    for _ in 0..600 {
        let all = local.app.store.recent(10_000).await.unwrap();
        if done(&all) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = local.app.store.recent(10_000).await.unwrap();
    let statuses: Vec<_> = all.iter().map(|d| (&d.connector, d.status)).collect();
    panic!("{what} did not happen: {statuses:?}");
}

fn count(all: &[hookbridge::event::Delivery], connector: &str, status: Status) -> usize {
    all.iter()
        .filter(|d| d.connector == connector && d.status == status)
        .count()
}

/// A DingTalk limited to 10 calls per second, hit with 60 notices at once: every one is sent,
/// none is dead, and ZenTao gets all of its own.
#[tokio::test]
async fn a_throttled_dingtalk_loses_nothing() {
    let fake = FakeDingTalk::start().await;
    fake.set_qps_limit(10);
    let zentao = FakeZenTao::start().await;
    let config = config(Some(&fake.url), &zentao_route(&zentao.url));
    let local = Local::start(config).await.unwrap();
    post_messages(&local, 60).await;
    until(&local, "every delivery final", |all| {
        all.len() == 120 && all.iter().all(|d| d.status.is_final())
    })
    .await;
    let all = local.app.store.recent(10_000).await.unwrap();
    assert_eq!(count(&all, "dingtalk", Status::Sent), 60);
    assert_eq!(count(&all, "zentao", Status::Sent), 60);
    assert!(
        fake.count("asyncsend_v2") > 60,
        "the fake throttled some calls"
    );
    assert_eq!(fake.tasks().len(), 60, "each notice delivered once");
}

/// DingTalk hangs: ZenTao's notices still all go out meanwhile, and DingTalk's follow when it
/// answers again.
#[tokio::test]
async fn a_stalled_dingtalk_does_not_hold_up_zentao() {
    let fake = FakeDingTalk::start().await;
    fake.hold();
    let zentao = FakeZenTao::start().await;
    let extra = format!("timeout_secs = 60\n{}", zentao_route(&zentao.url));
    let local = Local::start(config(Some(&fake.url), &extra)).await.unwrap();
    post_messages(&local, 20).await;
    until(&local, "ZenTao sent while DingTalk hangs", |all| {
        count(all, "zentao", Status::Sent) == 20
    })
    .await;
    let all = local.app.store.recent(10_000).await.unwrap();
    assert_eq!(
        count(&all, "dingtalk", Status::Sent),
        0,
        "DingTalk is hanging"
    );
    fake.release();
    until(&local, "DingTalk sent after it answers", |all| {
        count(all, "dingtalk", Status::Sent) == 20
    })
    .await;
}

/// 浙政钉 callbacks through `serve`'s real routes, with the TCP peer as the source address.
async fn govding_as(local: &Local, peer: &str, path: &str, body: &str) -> (u16, String) {
    let routes = hookbridge::local::router(
        local.app.clone(),
        &local.app.config.server,
        None,
        local.addr,
    );
    let req = http::Request::post(path)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    as_peer(routes, req, peer).await
}

#[tokio::test]
async fn serve_takes_govding_callbacks_from_allowed_peers_only() {
    let token = "serve-govding-token-0123";
    let local = serve(
        "",
        &format!(
            "[sources.govding]\npath_token = \"plain:{token}\"\nallow_ips = [\"198.51.100.0/27\"]\n\
             [[routes]]\nsource = \"govding\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n"
        ),
    )
    .await;
    let path = format!("/govding/{token}");
    let check = fixture("govding-register-check.json");
    let ok = r#"{"errcode":"0","errmsg":"成功"}"#.to_owned();
    assert_eq!(
        govding_as(&local, "198.51.100.20:40000", &path, &check).await,
        (200, ok.clone())
    );
    let leave = fixture("govding-employee-leave.json");
    assert_eq!(
        govding_as(&local, "198.51.100.20:40000", &path, &leave).await,
        (200, ok)
    );
    assert_eq!(
        govding_as(&local, "192.0.2.9:40000", &path, &leave).await,
        (404, String::new()),
        "not from the gateway: answered like a wrong token"
    );
    assert_eq!(
        govding_as(&local, "198.51.100.20:40000", "/govding/guess", &leave).await,
        (404, String::new())
    );
    // An attach event whose data is only in `infos` is an event, not the connectivity check.
    let attach = r#"{"dispatchId":"d-2","eventTag":"MOZI_VDS_TENANT_CHANGE|ORGANIZATION_ATTACH_EMPLOYEE","infos":[{"employeeCode":"GE_a","organizationCode":"GO_1"}]}"#;
    let (status, _) = govding_as(&local, "198.51.100.20:40000", &path, attach).await;
    assert_eq!(status, 200);
    let sent = local.app.store.recent(10).await.unwrap();
    assert_eq!(sent.len(), 2, "two events delivered: {sent:?}");
    assert!(sent.iter().all(|d| d.recipients == ["ops1"]));
    local.shutdown().await;
}
