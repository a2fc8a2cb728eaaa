//! A fake `oapi.dingtalk.com` on 127.0.0.1 that keeps state and enforces DingTalk's documented
//! rules: HTTP 200 with `errcode` on failure, the access token only in the
//! query, an expired or unknown token as `errcode 88` / `sub_code 40014`, 90018 above 20 calls
//! per second per API, `userid_list` ≤ 100, `msg` ≤ 2048 bytes, and status bars that only work
//! for sends to ≤ 5 users (DingTalk ignores them silently; the fake records a violation).
//! A send answers errcode 0 even to whom it then drops (an unknown userid, the same content
//! twice a day: 143106, the daily cap per person: 143105); `getsendprogress` and
//! `getsendresult` tell, as DingTalk does; past a monthly quota every call is 90020.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const APP_KEY: &str = "ding-fake-key";
pub const APP_SECRET: &str = "fake-secret";
pub const AGENT_ID: i64 = 1185599675;

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub task_id: i64,
    pub userids: Vec<String>,
    pub msgtype: String,
    /// The status bar as the recipients see it (`None`: no bar, or DingTalk ignored it).
    pub status: Option<String>,
    /// Taken back by `recall`: the recipients no longer see it.
    pub recalled: bool,
    /// Recipients DingTalk did not show it to, with the code `getsendresult` reports: 143106
    /// when the same content reached them the same day (the send still answers errcode 0).
    pub forbidden: Vec<(String, &'static str)>,
    /// Recipients that are no userid of the organisation.
    pub invalid: Vec<String>,
    /// Recipients who opened it ([`FakeDingTalk::mark_read`]).
    pub read: Vec<String>,
    /// `getsendprogress` calls so far.
    pub progress_polls: u32,
    pub content: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    token: Option<String>,
    token_seq: u32,
    expires_in: Option<i64>,
    next_task: i64,
    tasks: Vec<Task>,
    recent: HashMap<String, VecDeque<Instant>>,
    /// Canned answers for the next calls to a path: (HTTP status, body).
    injected: HashMap<String, VecDeque<(u16, String)>>,
    violations: Vec<String>,
    latency: Duration,
    /// Calls per second per API before 90018 (DingTalk's standard edition: 20).
    qps_limit: usize,
    /// While false, every call waits (DingTalk hanging).
    open: Option<tokio::sync::watch::Sender<bool>>,
    /// This share of calls fails with `errcode 500` (系统异常) after reaching the fake.
    fail_ratio: f64,
    /// (user, content) pairs shown today: DingTalk shows the same content to a person once a day.
    shown: std::collections::HashSet<(String, String)>,
    /// Userids the organisation does not have.
    invalid: std::collections::HashSet<String>,
    /// Messages a person may get from the app a day (DingTalk: 500), and how many each got.
    daily_cap: usize,
    received: HashMap<String, usize>,
    /// `getsendprogress` answers "running" this many times per task before "done".
    progress_running: u32,
    /// The organisation's monthly API calls (sends counted) and how many it has made: beyond
    /// them, 90020.
    monthly_quota: Option<usize>,
    quota_used: usize,
}

#[derive(Clone)]
pub struct FakeDingTalk {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The app's 服务器出口IP list: others get errcode 60020 naming their address.
    pub allowlist: Allowlist,
}

/// DingTalk's answer to a caller its app does not list, as its FAQ shows it (gettoken included).
fn not_listed(ip: std::net::IpAddr) -> Response {
    let msg = format!(
        "请参考FAQ：https://open-doc.dingtalk.com/microapp/faquestions/cvbtph。错误原因：访问ip不在白名单之中,request ip={ip} appKey({APP_KEY})"
    );
    axum::Json(err(60020, &msg)).into_response()
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "errcode": code, "errmsg": msg, "request_id": "fake" })
}

fn wrapped(sub_code: &str, sub_msg: &str) -> Value {
    json!({
        "errcode": 88,
        "sub_code": sub_code,
        "sub_msg": sub_msg,
        "errmsg": format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
        "request_id": "fake",
    })
}

impl FakeDingTalk {
    pub async fn start() -> FakeDingTalk {
        let inner = Arc::new(Mutex::new(Inner {
            next_task: 256271667526,
            expires_in: Some(7200),
            qps_limit: 20,
            daily_cap: 500,
            open: Some(tokio::sync::watch::channel(true).0),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/gettoken", get(gettoken))
            .route(
                "/topapi/message/corpconversation/asyncsend_v2",
                post(asyncsend),
            )
            .route(
                "/topapi/message/corpconversation/status_bar/update",
                post(status_bar),
            )
            .route("/topapi/message/corpconversation/recall", post(recall))
            .route("/topapi/v2/user/get", post(user_get))
            .route(
                "/topapi/message/corpconversation/getsendprogress",
                post(progress),
            )
            .route(
                "/topapi/message/corpconversation/getsendresult",
                post(send_result),
            )
            .fallback(|| async { axum::Json(err(22, "Invalid method")) })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeDingTalk {
            url: format!("http://{addr}"),
            inner,
            allowlist,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// The current token stops working, as when it expires: the next gettoken issues a new one.
    pub fn expire_token(&self) {
        self.lock().token = None;
    }

    /// What gettoken reports as `expires_in` (`None`: the field is left out).
    pub fn set_expires_in(&self, v: Option<i64>) {
        self.lock().expires_in = v;
    }

    /// Answer the next `times` calls to `path` with `body` and HTTP `status`.
    pub fn inject(&self, path: &str, status: u16, body: &str, times: usize) {
        let mut inner = self.lock();
        let q = inner.injected.entry(path.to_owned()).or_default();
        q.extend(std::iter::repeat_n((status, body.to_owned()), times));
    }

    /// Answer 90018 above `qps` calls per second per API, as a smaller or busier org does.
    pub fn set_qps_limit(&self, qps: usize) {
        self.lock().qps_limit = qps;
    }

    /// Every call hangs until [`FakeDingTalk::release`].
    pub fn hold(&self) {
        self.lock().open.as_ref().unwrap().send_replace(false);
    }

    pub fn release(&self) {
        self.lock().open.as_ref().unwrap().send_replace(true);
    }

    /// A share (0 to 1) of all calls answers errcode 500 (系统异常), a transient failure.
    pub fn set_fail_ratio(&self, ratio: f64) {
        self.lock().fail_ratio = ratio;
    }

    /// Every call takes at least this long (to make concurrent callers overlap).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    pub fn calls(&self, path_suffix: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    pub fn count(&self, path_suffix: &str) -> usize {
        self.calls(path_suffix).len()
    }

    /// These userids are unknown to the organisation: sends to them succeed, then nobody gets them.
    pub fn set_invalid_users(&self, users: &[&str]) {
        self.lock().invalid = users.iter().map(|u| (*u).to_owned()).collect();
    }

    /// A person gets at most `cap` messages a day from the app; more are dropped with 143105.
    pub fn set_daily_cap(&self, cap: usize) {
        self.lock().daily_cap = cap;
    }

    /// `getsendprogress` answers "running" `polls` times per task before it answers "done".
    pub fn set_progress_running(&self, polls: u32) {
        self.lock().progress_running = polls;
    }

    /// The organisation may make `calls` more sends this month; then every call is 90020.
    pub fn set_monthly_quota(&self, calls: usize) {
        let mut inner = self.lock();
        (inner.monthly_quota, inner.quota_used) = (Some(calls), 0);
    }

    /// `user` opens the message of `task_id`.
    pub fn mark_read(&self, task_id: i64, user: &str) {
        let mut inner = self.lock();
        if let Some(t) = inner.tasks.iter_mut().find(|t| t.task_id == task_id) {
            t.read.push(user.to_owned());
        }
    }

    pub fn tasks(&self) -> Vec<Task> {
        self.lock().tasks.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn enter(
    s: &Shared,
    path: &str,
    query: &HashMap<String, String>,
    body: Value,
) -> Option<Response> {
    let (latency, mut open) = {
        let mut inner = s.lock().unwrap();
        inner.calls.push(Call {
            path: path.to_owned(),
            query: query.clone(),
            body,
        });
        (inner.latency, inner.open.as_ref().unwrap().subscribe())
    };
    let _ = open.wait_for(|open| *open).await;
    tokio::time::sleep(latency).await;
    let mut inner = s.lock().unwrap();
    if let Some((status, body)) = inner.injected.get_mut(path).and_then(VecDeque::pop_front) {
        return Some((StatusCode::from_u16(status).unwrap(), body).into_response());
    }
    if path != "/gettoken" && inner.monthly_quota.is_some_and(|q| inner.quota_used >= q) {
        let answer = err(90020, "Forbidden.AccessDenied.ApiCountLimitForOrg");
        return Some(axum::Json(answer).into_response());
    }
    if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
        return Some(axum::Json(err(500, "系统异常")).into_response());
    }
    // 20 QPS per app and API (or the limit set).
    let limit = inner.qps_limit;
    let now = Instant::now();
    let window = inner.recent.entry(path.to_owned()).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
    window.push_back(now);
    if window.len() > limit {
        return Some(
            axum::Json(err(90018, "当前应用调用该接口的并发量已超过上限")).into_response(),
        );
    }
    None
}

fn check_token(inner: &Inner, query: &HashMap<String, String>) -> Result<(), Value> {
    match query.get("access_token").map(String::as_str) {
        None | Some("") => Err(err(41001, "缺少access_token参数")),
        Some(t) if Some(t) == inner.token.as_deref() => Ok(()),
        Some(_) => Err(wrapped("40014", "不合法的access_token")),
    }
}

async fn gettoken(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = enter(&s, "/gettoken", &q, Value::Null).await {
        return r;
    }
    let mut inner = s.lock().unwrap();
    if q.get("appkey").map(String::as_str) != Some(APP_KEY)
        || q.get("appsecret").map(String::as_str) != Some(APP_SECRET)
    {
        return axum::Json(err(40096, "不合法的appKey或appSecret")).into_response();
    }
    // Within validity the same token comes back; after expiry a new one is issued.
    if inner.token.is_none() {
        inner.token_seq += 1;
        inner.token = Some(format!("fake-token-{}", inner.token_seq));
    }
    let mut answer = json!({ "errcode": 0, "errmsg": "ok", "access_token": inner.token });
    if let Some(v) = inner.expires_in {
        answer["expires_in"] = json!(v);
    }
    axum::Json(answer).into_response()
}

/// What every topapi call checks first: a JSON body, the token in the query, our agent id.
fn checked(
    inner: &Inner,
    parsed: Result<Value, Value>,
    query: &HashMap<String, String>,
) -> Result<Value, Value> {
    let body = parsed?;
    check_token(inner, query)?;
    if body["agent_id"].as_i64() != Some(AGENT_ID) {
        return Err(err(40056, "不合法的agentid"));
    }
    Ok(body)
}

fn parse_body(body: &Bytes) -> Result<Value, Value> {
    serde_json::from_slice(body).map_err(|_| err(43004, "需要POST JSON"))
}

async fn asyncsend(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/message/corpconversation/asyncsend_v2";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let mut inner = s.lock().unwrap();
    let answer = (|| {
        let body = checked(&inner, parsed, &q)?;
        let users: Vec<String> = body["userid_list"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        let depts: Vec<String> = body["dept_id_list"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| format!("dept:{d}"))
            .collect();
        let everyone = body["to_all_user"].as_bool() == Some(true);
        if users.is_empty() && depts.is_empty() && !everyone {
            return Err(err(40035, "缺少参数 userid_list"));
        }
        if users.len() > 100 || depts.len() > 20 {
            return Err(err(40032, "userid_list长度超过限制"));
        }
        // Whom it reaches, as the fake's tasks name them.
        let users: Vec<String> = match (everyone, users.is_empty()) {
            (true, _) => vec!["@all".to_owned()],
            (false, true) => depts,
            (false, false) => users.into_iter().chain(depts).collect(),
        };
        let msg = &body["msg"];
        if serde_json::to_vec(msg).unwrap().len() > 2048 {
            return Err(err(34016, "消息内容过长"));
        }
        let msgtype = msg["msgtype"].as_str().unwrap_or("").to_owned();
        if msg.get(&msgtype).is_none() {
            return Err(err(34014, "消息体不完整"));
        }
        let bar = msg["oa"]["status_bar"]["status_value"]
            .as_str()
            .map(str::to_owned);
        let status = match bar {
            Some(_)
                if users.len() > 5
                    || users.iter().any(|u| u == "@all" || u.starts_with("dept:")) =>
            {
                inner.violations.push(format!(
                    "status bar sent to {} users, or to departments or everyone; DingTalk ignores it",
                    users.len()
                ));
                None
            }
            b => b,
        };
        inner.next_task += 1;
        inner.quota_used += 1;
        let task_id = inner.next_task;
        let content = msg.to_string();
        let (mut forbidden, mut invalid) = (vec![], vec![]);
        for u in &users {
            if inner.invalid.contains(u) {
                invalid.push(u.clone());
            } else if !inner.shown.insert((u.clone(), content.clone())) {
                forbidden.push((u.clone(), "143106"));
            } else if inner.received.get(u).copied().unwrap_or(0) >= inner.daily_cap {
                forbidden.push((u.clone(), "143105"));
            } else {
                *inner.received.entry(u.clone()).or_default() += 1;
            }
        }
        inner.tasks.push(Task {
            task_id,
            userids: users,
            msgtype,
            status,
            recalled: false,
            forbidden,
            invalid,
            read: vec![],
            progress_polls: 0,
            content: msg.clone(),
        });
        Ok(json!({ "errcode": 0, "task_id": task_id, "request_id": "fake" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}

async fn status_bar(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/message/corpconversation/status_bar/update";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let mut inner = s.lock().unwrap();
    let answer = (|| {
        let body = checked(&inner, parsed, &q)?;
        let task_id = body["task_id"]
            .as_i64()
            .ok_or_else(|| err(40035, "不合法的参数 task_id"))?;
        let value = body["status_value"].as_str().unwrap_or("").to_owned();
        let Some(task) = inner.tasks.iter_mut().find(|t| t.task_id == task_id) else {
            return Err(err(40035, "不合法的参数 task_id"));
        };
        if task.msgtype != "oa" || task.status.is_none() {
            let v = format!("status bar update of task {task_id}, which shows no status bar");
            inner.violations.push(v);
            return Ok(json!({ "errcode": 0, "errmsg": "ok" }));
        }
        task.status = Some(value);
        Ok(json!({ "errcode": 0, "errmsg": "ok" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}

/// `recall`: `msg_task_id` names the send's task; an unknown one is 400002 as on DingTalk.
async fn recall(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/message/corpconversation/recall";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let mut inner = s.lock().unwrap();
    let answer = (|| {
        let body = checked(&inner, parsed, &q)?;
        let task_id = body["msg_task_id"].as_i64();
        let Some(task) = inner.tasks.iter_mut().find(|t| Some(t.task_id) == task_id) else {
            return Err(err(400002, "无效的agentId或taskId"));
        };
        task.recalled = true;
        Ok(json!({ "errcode": 0, "errmsg": "ok" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}

/// `getsendprogress`: "running" for the first polls of a task (as set), then done.
/// `/topapi/v2/user/get`: a userid of the organisation, or 60121 (找不到该用户) for one it does
/// not have ([`FakeDingTalk::set_invalid_users`]).
async fn user_get(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/v2/user/get";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let inner = s.lock().unwrap();
    let answer = (|| {
        let body = parsed?;
        check_token(&inner, &q)?;
        let user = body["userid"].as_str().unwrap_or_default();
        if user.is_empty() || inner.invalid.contains(user) {
            return Err(err(60121, "找不到该用户"));
        }
        Ok(json!({"errcode": 0, "errmsg": "ok", "result": {"userid": user, "name": user}}))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}

async fn progress(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/message/corpconversation/getsendprogress";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let mut inner = s.lock().unwrap();
    let running = inner.progress_running;
    let answer = (|| {
        let body = checked(&inner, parsed, &q)?;
        let task_id = body["task_id"].as_i64();
        let Some(task) = inner.tasks.iter_mut().find(|t| Some(t.task_id) == task_id) else {
            return Err(err(40035, "不合法的参数 task_id"));
        };
        task.progress_polls += 1;
        let progress = if task.progress_polls > running {
            json!({ "progress_in_percent": 100, "status": 2 })
        } else {
            json!({ "progress_in_percent": 50, "status": 1 })
        };
        Ok(json!({ "errcode": 0, "progress": progress, "request_id": "fake" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}

/// `getsendresult`: who read it, who has not, who was invalid or forbidden and why.
async fn send_result(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = "/topapi/message/corpconversation/getsendresult";
    let parsed = parse_body(&body);
    if let Some(r) = enter(&s, path, &q, parsed.clone().unwrap_or(Value::Null)).await {
        return r;
    }
    let inner = s.lock().unwrap();
    let answer = (|| {
        let body = checked(&inner, parsed, &q)?;
        let task_id = body["task_id"].as_i64();
        let Some(task) = inner.tasks.iter().find(|t| Some(t.task_id) == task_id) else {
            return Err(err(40035, "不合法的参数 task_id"));
        };
        let dropped =
            |u: &String| task.invalid.contains(u) || task.forbidden.iter().any(|(f, _)| f == u);
        let (read, unread): (Vec<&String>, Vec<&String>) = task
            .userids
            .iter()
            .filter(|u| !dropped(u))
            .partition(|u| task.read.contains(u));
        let forbidden: Vec<Value> = task
            .forbidden
            .iter()
            .map(|(u, code)| json!({ "code": code, "count": 1, "userid": u }))
            .collect();
        let mut result = json!({
            "read_user_id_list": read,
            "unread_user_id_list": unread,
            "forbidden_list": forbidden,
        });
        // Empty lists are sometimes left out, as DingTalk does.
        if !task.invalid.is_empty() {
            result["invalid_user_id_list"] = json!(task.invalid);
        }
        Ok(json!({ "errcode": 0, "send_result": result, "request_id": "fake" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}
