//! A fake ZenTao/Xuanxuan on 127.0.0.1 that checks requests as ZenTao's own PHP does
//! (`common/model.php` `checkEntry`/`checkEntryToken`, the xuan extension's `im` control and
//! models): the query is parsed and `token` dropped; with a `time` that signs as
//! `md5(code . key . time)` the time must be later than the entry's `calledTime` (else errcode
//! 405), which it then becomes; otherwise the rest is rebuilt with `http_build_query` and compared
//! with `md5(md5(query) . key)`. Then `im/*` validates and answers `{"result": ...}`, and sends
//! as ZenTao does: a chat message to the gid's current members, and, when that list is empty
//! (an unknown gid, a dismissed group, everyone left), to every active user.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const CODE: &str = "hookbridge";
pub const KEY: &str = "3cd0914d656e90ab181f1d52ff352cfe";
pub const GROUP: &str = "30683aea-7a1f-4ec8-a6d6-834e0310fd7d";
/// The login the REST API takes (`directory` in the config): an account with company-browse.
pub const READER: &str = "reader";
pub const READER_PASSWORD: &str = "fake-reader-password";
const SESSION: &str = "fake-zentao-session";
/// A group chat that still exists but whose members have all quit.
pub const EMPTY_GROUP: &str = "7d3f6c1e-0c55-4c4e-9d0e-2f1c8d5b9a10";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub entry: String,
    /// The query string exactly as sent (token included).
    pub query: String,
    pub body: Value,
    /// The accounts a send reached, as ZenTao resolved them.
    pub reached: Vec<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Canned answers for the next calls: (HTTP status, body).
    injected: VecDeque<(u16, String)>,
    /// This share of calls answers HTTP 502 before ZenTao sees them (a proxy in trouble).
    fail_ratio: f64,
    /// The entry's `calledTime`: the last time a time token was accepted.
    called_time: i64,
    /// Calls refused with 405 (a time not later than `calledTime`).
    stale_times: usize,
}

#[derive(Clone)]
pub struct FakeZenTao {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The app's IP list: others get errcode 403 `IP_DENIED`.
    pub allowlist: Allowlist,
}

fn not_listed(_: std::net::IpAddr) -> Response {
    axum::Json(json!({"errcode": 403, "errmsg": "IP_DENIED"})).into_response()
}

/// PHP `urlencode`, written again here so the fake does not trust the code under test.
fn php_urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() || b"-_.".contains(&b) => (b as char).to_string(),
            b' ' => "+".to_owned(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn php_urldecode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(hex);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Active users: id → (account, real name).
fn users() -> BTreeMap<&'static str, (&'static str, &'static str)> {
    BTreeMap::from([
        ("1", ("admin", "管理员")),
        ("3", ("zhangsan", "张三")),
        ("4", ("lisi", "李四")),
    ])
}

/// Group chats that are not dismissed: gid → (name, ids of members who have not quit).
fn groups() -> BTreeMap<&'static str, (&'static str, &'static [&'static str])> {
    BTreeMap::from([
        (GROUP, ("运维群", &["3", "4"][..])),
        (EMPTY_GROUP, ("已解散的项目群", &[][..])),
    ])
}

/// `im/model/user.php` `getList('', $idList)`: the active users among `wanted` (ids when the
/// first is numeric, else accounts); **every active user when `wanted` is empty**.
fn user_list(wanted: &[String]) -> Vec<String> {
    let by_id = wanted
        .first()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()));
    users()
        .into_iter()
        .filter(|(id, (account, _))| {
            wanted.is_empty() || wanted.iter().any(|w| w == if by_id { id } else { account })
        })
        .map(|(_, (account, _))| account.to_owned())
        .collect()
}

fn fail(message: &str) -> Value {
    json!({ "result": "fail", "message": message })
}

/// The config section of an instance `main` pointing at the fake at `url`.
pub fn instance(url: &str) -> String {
    format!(
        "\n[connectors.zentao.main]\nbase_url = \"{url}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n"
    )
}

/// [`instance`] and a route of HAP's events to it.
pub fn hap_route(url: &str) -> String {
    format!(
        "{}\n[[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\n",
        instance(url)
    )
}

impl FakeZenTao {
    pub async fn start() -> FakeZenTao {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{entry}", any(handle))
            .route("/api.php/v1/tokens", axum::routing::post(rest_token))
            .route("/api.php/v1/users", axum::routing::get(rest_users))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeZenTao {
            url,
            inner,
            allowlist,
        }
    }

    pub fn inject(&self, status: u16, body: &str, times: usize) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .injected
            .extend(std::iter::repeat_n((status, body.to_owned()), times));
    }

    /// A share (0 to 1) of all calls answers HTTP 502, a transient failure.
    pub fn set_fail_ratio(&self, ratio: f64) {
        self.inner.lock().unwrap().fail_ratio = ratio;
    }

    /// Every call that passed the entry checks, in order.
    pub fn all_calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Calls refused because their time was not later than the entry's last.
    pub fn stale_times(&self) -> usize {
        self.inner.lock().unwrap().stale_times
    }

    /// Calls that passed the entry checks, by method.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.inner
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn handle(
    State(s): State<Shared>,
    axum::extract::Path(entry): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if entry != "x.php" && entry != "api.php" {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    let mut inner = s.lock().unwrap();
    if let Some((status, body)) = inner.injected.pop_front() {
        return (StatusCode::from_u16(status).unwrap(), body).into_response();
    }
    if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
        return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
    }
    let raw_query = query.unwrap_or_default();
    let answer = (|| {
        let pairs: Vec<(String, String)> = raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (php_urldecode(k), php_urldecode(v))
            })
            .collect();
        let get = |k: &str| pairs.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
        let Some(code) = get("code") else {
            return json!({"errcode": 401, "errmsg": "PARAM_CODE_MISSING"});
        };
        if code != CODE {
            return json!({"errcode": 404, "errmsg": "EMPTY_ENTRY"});
        }
        let Some(token) = get("token") else {
            return json!({"errcode": 401, "errmsg": "PARAM_TOKEN_MISSING"});
        };
        let mut valid = false;
        if let Some(time) = get("time") {
            let second: String = time.chars().take(10).collect();
            if second.len() != 10 || second.as_bytes()[0] >= b'4' {
                return json!({"errcode": 407, "errmsg": "ERROR_TIMESTAMP"});
            }
            if token == md5_hex(&format!("{CODE}{KEY}{time}")) {
                // PHP compares the digit strings as numbers.
                let second: i64 = second.parse().unwrap_or(0);
                if second <= inner.called_time {
                    inner.stale_times += 1;
                    return json!({"errcode": 405, "errmsg": "Token已失效"});
                }
                inner.called_time = second;
                valid = true;
            }
        }
        let rebuilt: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| format!("{}={}", php_urlencode(k), php_urlencode(v)))
            .collect();
        if !valid && token != md5_hex(&(md5_hex(&rebuilt.join("&")) + KEY)) {
            return json!({"errcode": 401, "errmsg": "INVALID_TOKEN"});
        }
        if get("m").as_deref() != Some("im") {
            return fail("unknown module");
        }
        let method = get("f").unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut call = Call {
            method: method.clone(),
            entry: entry.clone(),
            query: raw_query.clone(),
            body: body.clone(),
            reached: vec![],
        };
        let answer = match method.as_str() {
            "getGroupChats" => {
                let data: BTreeMap<&str, &str> = groups()
                    .into_iter()
                    .map(|(g, (name, _))| (g, name))
                    .collect();
                json!({"result": "success", "data": data})
            }
            // `chat.php` `getUserPairs`: the members who have not quit, or everyone without a
            // gid; PHP's json_encode writes an empty array as `[]`.
            "getChatUsers" => {
                let members: Option<Vec<&str>> = get("gid").map(|g| {
                    groups()
                        .get(g.as_str())
                        .map(|(_, m)| m.to_vec())
                        .unwrap_or_default()
                });
                let data: BTreeMap<&str, &str> = users()
                    .into_iter()
                    .filter(|(id, _)| members.as_ref().is_none_or(|m| m.contains(id)))
                    .map(|(id, (_, name))| (id, name))
                    .collect();
                if data.is_empty() {
                    json!({"result": "success", "data": []})
                } else {
                    json!({"result": "success", "data": data})
                }
            }
            "sendNotification" | "sendChatMessage" => {
                let to_group = method == "sendChatMessage";
                if to_group && body["gid"].as_str().is_none_or(str::is_empty) {
                    return fail("请设置讨论组。");
                }
                if !to_group && body["users"].as_array().is_none_or(Vec::is_empty) {
                    return fail("应当设置接收者用户列表。");
                }
                if body["sender"].as_object().is_none_or(|o| o.is_empty()) {
                    return fail("请设置消息发送者。");
                }
                if body["title"].as_str().is_none_or(str::is_empty) {
                    return fail("请提供通知信息的标题。");
                }
                let wanted: Vec<String> = if to_group {
                    let gid = body["gid"].as_str().unwrap_or_default();
                    let members = groups()
                        .get(gid)
                        .map(|(_, m)| m.to_vec())
                        .unwrap_or_default();
                    members.into_iter().map(str::to_owned).collect()
                } else {
                    body["users"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_owned))
                        .collect()
                };
                call.reached = user_list(&wanted);
                json!({"result": "success", "message": ""})
            }
            _ => return fail("unknown method"),
        };
        inner.calls.push(call);
        answer
    })();
    axum::Json(answer).into_response()
}

/// REST API v1 `POST /tokens` (`api/v1/entries/tokens.php`): a session token for a login.
async fn rest_token(body: Bytes) -> Response {
    let login: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if login["account"] == READER && login["password"] == READER_PASSWORD {
        return (StatusCode::CREATED, axum::Json(json!({ "token": SESSION }))).into_response();
    }
    let failed = json!({ "error": "登录失败，请检查您的用户名或密码是否填写正确。" });
    (StatusCode::BAD_REQUEST, axum::Json(failed)).into_response()
}

/// REST API v1 `GET /users` (`api/v1/entries/users.php`), as the session's account: paged,
/// ids as PHP sends them (text).
async fn rest_users(
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if headers.get("token").and_then(|t| t.to_str().ok()) != Some(SESSION) {
        let error = json!({ "error": "Unauthorized" });
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20)
        .max(1);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let all: Vec<Value> = users()
        .into_iter()
        .map(|(id, (account, realname))| json!({ "id": id, "dept": 0, "account": account, "realname": realname }))
        .collect();
    let shown: Vec<&Value> = all.iter().skip((page - 1) * limit).take(limit).collect();
    axum::Json(json!({ "page": page, "total": all.len(), "limit": limit, "users": shown }))
        .into_response()
}
