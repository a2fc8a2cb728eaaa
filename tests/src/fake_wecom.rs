//! A fake WeCom server API on 127.0.0.1 that does what WeCom's server API documentation says
//! (and where it is silent, what is marked so): `gettoken` (corp id and secret checked, 7200 s
//! tokens, 40013/40001), every call's `access_token` (40014 unknown, 42001 expired), the app's
//! 企业可信IP (60020), `message/send` (agentid, msgtype, `touser` `|`-joined, `invaliduser` and
//! `unlicenseduser` for the ids it does not take, 81013 when it takes nobody, the duplicate
//! check: the same content to the same people within the interval shows once, a
//! `response_code` for button cards), `update_template_card` (a code works once, within 72 h),
//! `recall` (its msgid, within 24 h).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::any;
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const CORP_ID: &str = "wwfake0123456789ab";
pub const SECRET: &str = "fake-wecom-app-secret";
pub const AGENT_ID: i64 = 1000002;
/// The people the app can reach; anyone else is `invaliduser`.
pub const USERS: &[&str] = &["zhangsan", "lisi", "wangwu", "ops1"];
/// Reachable, but without a 接口许可: `unlicenseduser`.
pub const UNLICENSED: &str = "wangwu";

/// Members' mobiles and business emails, for lookups (`users_by`).
pub const DIRECTORY: &[(&str, &str, &str)] = &[
    ("zhangsan", "13800000001", "zhangsan@corp.example"),
    ("lisi", "13800000002", "lisi@corp.example"),
];

/// What the fake showed or changed.
#[derive(Debug, Clone)]
pub struct Shown {
    pub msgid: String,
    pub users: Vec<String>,
    pub body: Value,
    /// The button's text once `update_template_card` changed it.
    pub replaced: Option<String>,
    pub recalled: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<(String, Value)>,
    tokens: HashSet<String>,
    expired: HashSet<String>,
    issued: usize,
    shown: Vec<Shown>,
    /// response_code → index into `shown`, while unused.
    codes: HashMap<String, usize>,
    /// The share of message calls answered -1 (系统繁忙) before they do anything.
    fail_ratio: f64,
    /// Message calls a minute beyond which WeCom answers 45009 (its frequency limits are per
    /// minute and hour, document 90454; none is per second); 0: no limit.
    per_minute_limit: usize,
    recent: VecDeque<Instant>,
    /// When each person was last shown messages, for WeCom's 30 a minute to one person.
    received: HashMap<String, VecDeque<Instant>>,
    /// Person-messages beyond that limit: answered ok and never shown, as WeCom does.
    dropped: usize,
    /// Messages a minute to one person (WeCom's 30; 0 also means 30).
    person_limit: usize,
}

#[derive(Clone)]
pub struct FakeWeCom {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The app's 企业可信IP: others get 60020.
    pub allowlist: Allowlist,
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "errcode": code, "errmsg": format!("{msg}, hint: [1796000000_fake], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}") })
}

fn not_listed(_: std::net::IpAddr) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(err(60020, "not allow to access from your ip")).into_response()
}

/// `[connectors.wecom]` for this server, HAP's ids mapped, and a route from HAP to it (last,
/// so that keys appended after it are the route's).
pub fn hap_route(url: &str) -> String {
    format!(
        "\n[connectors.wecom]\ncorp_id = \"{CORP_ID}\"\nagent_id = {AGENT_ID}\nsecret = \"plain:{SECRET}\"\nbase_url = \"{url}\"\n\n\
         [recipients.wecom.map]\nmanager4220 = \"zhangsan\"\n\"0147282552401293909\" = \"lisi\"\nwangwu_2231 = \"ops1\"\n\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom\"\n"
    )
}

impl FakeWeCom {
    pub async fn start() -> FakeWeCom {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/cgi-bin/{*path}", any(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeWeCom {
            url,
            inner,
            allowlist,
        }
    }

    /// Every token issued so far stops working (42001), as at the end of its 7200 s.
    pub fn expire_tokens(&self) {
        let mut inner = self.inner.lock().unwrap();
        let tokens: Vec<String> = inner.tokens.drain().collect();
        inner.expired.extend(tokens);
    }

    /// How many tokens `gettoken` issued.
    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().unwrap().issued
    }

    /// The calls of `path` (`message/send`…), their bodies in order.
    pub fn calls(&self, path: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .calls
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// What people were shown, in order.
    pub fn shown(&self) -> Vec<Shown> {
        self.inner.lock().unwrap().shown.clone()
    }

    /// Person-messages answered ok but never shown (beyond 30 a minute to one person).
    pub fn dropped(&self) -> usize {
        self.inner.lock().unwrap().dropped
    }

    /// Messages a minute to one person, as a private deployment might allow.
    pub fn set_person_limit(&self, per_minute: usize) {
        self.inner.lock().unwrap().person_limit = per_minute;
    }

    pub fn set_fail_ratio(&self, ratio: f64) {
        self.inner.lock().unwrap().fail_ratio = ratio;
    }

    pub fn set_per_minute_limit(&self, calls: usize) {
        self.inner.lock().unwrap().per_minute_limit = calls;
    }

    /// Makes every unused `response_code` unusable, as after 72 hours.
    pub fn age_codes(&self) {
        self.inner.lock().unwrap().codes.clear();
    }
}

async fn handle(
    State(s): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let mut inner = s.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.calls.push((path.clone(), body.clone()));
    if path == "gettoken" {
        if q.get("corpid").map(String::as_str) != Some(CORP_ID) {
            return axum::Json(err(40013, "invalid corpid"));
        }
        if q.get("corpsecret").map(String::as_str) != Some(SECRET) {
            return axum::Json(err(40001, "invalid credential"));
        }
        inner.issued += 1;
        let token = format!("wecom-token-{}", inner.issued);
        inner.tokens.insert(token.clone());
        return axum::Json(
            json!({ "errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200 }),
        );
    }
    let token = q.get("access_token").cloned().unwrap_or_default();
    if inner.expired.contains(&token) {
        return axum::Json(err(42001, "access_token expired"));
    }
    if !inner.tokens.contains(&token) {
        return axum::Json(err(40014, "invalid access_token"));
    }
    if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
        return axum::Json(err(-1, "system busy"));
    }
    if inner.per_minute_limit > 0 {
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            inner.recent.pop_front();
        }
        if inner.recent.len() >= inner.per_minute_limit {
            return axum::Json(err(45009, "api freq out of limit"));
        }
        inner.recent.push_back(now);
    }
    let answer = match path.as_str() {
        "message/send" => send(&mut inner, &body),
        "message/update_template_card" => update(&mut inner, &body),
        "message/recall" => recall(&mut inner, &body),
        "user/getuserid" => lookup(&body, "mobile"),
        "user/get_userid_by_email" => lookup(&body, "email"),
        _ => err(404, "api not found"),
    };
    axum::Json(answer)
}

fn send(inner: &mut Inner, body: &Value) -> Value {
    if body["agentid"].as_i64() != Some(AGENT_ID) {
        return err(40056, "invalid agentid");
    }
    let msgtype = body["msgtype"].as_str().unwrap_or("");
    if !["text", "markdown", "textcard", "news", "template_card"].contains(&msgtype)
        || body.get(msgtype).is_none()
    {
        return err(40008, "invalid message type");
    }
    let named: Vec<String> = body["touser"]
        .as_str()
        .unwrap_or("")
        .split('|')
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let everyone = named.iter().any(|u| u == "@all");
    let invalid: Vec<&String> = named
        .iter()
        .filter(|u| !everyone && !USERS.contains(&u.as_str()))
        .collect();
    let unlicensed: Vec<&String> = named.iter().filter(|u| *u == UNLICENSED).collect();
    let reached: Vec<String> = if everyone {
        USERS.iter().map(|u| (*u).to_owned()).collect()
    } else {
        named
            .iter()
            .filter(|u| USERS.contains(&u.as_str()) && *u != UNLICENSED)
            .cloned()
            .collect()
    };
    let audience = body.get("toparty").is_some() || body.get("totag").is_some();
    if reached.is_empty() && !audience {
        return err(81013, "user & party & tag all invalid");
    }
    // The duplicate check: the same message to the same people, shown once.
    let duplicate = body["enable_duplicate_check"] == 1
        && inner
            .shown
            .iter()
            .any(|s| s.users == reached && s.body[msgtype] == body[msgtype]);
    let msgid = format!("msg-{}", inner.shown.len() + 1);
    let mut answer = json!({
        "errcode": 0, "errmsg": "ok", "msgid": msgid,
        "invaliduser": invalid.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("|"),
        "invalidparty": "", "invalidtag": "",
        "unlicenseduser": unlicensed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("|"),
    });
    if duplicate {
        return answer;
    }
    let now = Instant::now();
    let per_minute = if inner.person_limit == 0 {
        30
    } else {
        inner.person_limit
    };
    let mut kept = vec![];
    for u in reached {
        let times = inner.received.entry(u.clone()).or_default();
        times.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if times.len() < per_minute {
            times.push_back(now);
            kept.push(u);
        } else {
            inner.dropped += 1;
        }
    }
    let reached = kept;
    if reached.is_empty() {
        return answer;
    }
    if body["template_card"]["card_type"] == "button_interaction" {
        let code = format!("rc-{}", inner.shown.len() + 1);
        inner.codes.insert(code.clone(), inner.shown.len());
        answer["response_code"] = json!(code);
    }
    inner.shown.push(Shown {
        msgid,
        users: reached,
        body: body.clone(),
        replaced: None,
        recalled: false,
    });
    answer
}

/// A member's userid by mobile or email, or 46004 for nobody.
fn lookup(body: &Value, field: &str) -> Value {
    let wanted = body[field].as_str().unwrap_or_default();
    let by_email = field == "email";
    match DIRECTORY
        .iter()
        .find(|d| wanted == if by_email { d.2 } else { d.1 })
    {
        Some(d) => json!({ "errcode": 0, "errmsg": "ok", "userid": d.0 }),
        None => err(46004, "user no exist"),
    }
}

fn update(inner: &mut Inner, body: &Value) -> Value {
    let code = body["response_code"].as_str().unwrap_or("");
    // Unconfirmed: the code WeCom gives for a used or expired response_code.
    let Some(i) = inner.codes.remove(code) else {
        return err(40058, "invalid response_code");
    };
    inner.shown[i].replaced = body["button"]["replace_name"].as_str().map(str::to_owned);
    json!({ "errcode": 0, "errmsg": "ok", "invaliduser": [] })
}

fn recall(inner: &mut Inner, body: &Value) -> Value {
    let msgid = body["msgid"].as_str().unwrap_or("");
    match inner.shown.iter_mut().find(|s| s.msgid == msgid) {
        Some(s) if !s.recalled => {
            s.recalled = true;
            json!({ "errcode": 0, "errmsg": "ok" })
        }
        // Unconfirmed: the code for an unknown or already recalled msgid.
        _ => err(40058, "invalid msgid"),
    }
}
