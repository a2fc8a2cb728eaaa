//! A fake 浙政钉 open-platform gateway on 127.0.0.1 that checks every request as the gateway
//! does: the HMAC headers are recomputed from the form it received (written again here, not
//! borrowed from the code under test) and a mismatch is `SignatureDoesNotMatch`; a repeated
//! `bizMsgId` is answered "重复"; some answers carry `content` as a JSON string, as the SDK's
//! response class does.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const APP_KEY: &str = "hookbridge_test_app";
pub const APP_SECRET: &str = "govding-test-secret";
pub const TENANT: &str = "196729";
/// The access token `/gettoken.json` hands out.
pub const TOKEN: &str = "fake-govding-access-token";
/// What a callback must answer, exactly.
pub const SUCCESS: &str = r#"{"errcode":"0","errmsg":"成功"}"#;
/// How often the gateway tries one callback (its page: 16 calls over 4 hours).
pub const TRIES: usize = 16;

/// One call that passed the signature check.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    seen: HashSet<String>,
    /// Canned answers for the next calls that pass the signature check: (HTTP status, body).
    injected: VecDeque<(u16, String)>,
    /// Answer with `content` as a JSON string, as some SDK versions see it.
    content_as_text: bool,
    /// Process the next calls but answer 504, as when the answer is lost on the way back.
    lose_answers: usize,
    rejected_signatures: usize,
    /// This tenant wants an access token on work notifications.
    require_token: bool,
    /// (employeeCode, accountId) the tenant's directory knows.
    directory: Vec<(String, String)>,
    /// (eventCallbackId, eventTag, callbackUrl) as registered.
    registrations: Vec<(u64, String, String)>,
    /// (eventCallbackFailedId, eventTag, body) of callbacks that failed every retry.
    failed: Vec<(u64, String, String)>,
}

#[derive(Clone)]
pub struct FakeGovDing {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The app's IP 白名单, checked before the signature. The envelope of this refusal is
    /// not documented: the gateway's own error shape, with the message its users report.
    pub allowlist: Allowlist,
}

fn not_listed(_: std::net::IpAddr) -> axum::response::Response {
    let body = json!({"success": false, "Message": "访问IP不在白名单中", "_RequestId": "fake-req"});
    (StatusCode::OK, body.to_string()).into_response()
}

/// `[connectors.govding]` for this server, and a route from HAP to it.
pub fn hap_route(url: &str, secret: &str) -> String {
    format!(
        "\n[connectors.govding]\nbase_url = \"{url}\"\napp_key = \"{APP_KEY}\"\napp_secret = \"plain:{secret}\"\ntenant_id = \"{TENANT}\"\n\n[[routes]]\nsource = \"hap\"\nconnector = \"govding\"\n"
    )
}

impl FakeGovDing {
    pub async fn start() -> FakeGovDing {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{*path}", any(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeGovDing {
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

    /// The next `n` calls are processed, but their answers are lost (HTTP 504).
    pub fn lose_answers(&self, n: usize) {
        self.inner.lock().unwrap().lose_answers = n;
    }

    pub fn content_as_text(&self) {
        self.inner.lock().unwrap().content_as_text = true;
    }

    /// Calls that passed the signature check, in order (a "重复" one included).
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Plays the gateway's callback side: delivers `body` for `tag` to the URL registered for
    /// it, up to [`TRIES`] times; a callback that fails them all lands in the failed list.
    /// Returns whether it was delivered.
    pub async fn callback(&self, tag: &str, body: &str) -> bool {
        let url = self
            .inner
            .lock()
            .unwrap()
            .registrations
            .iter()
            .find(|(_, t, _)| t == tag)
            .map(|(_, _, u)| u.clone());
        let Some(url) = url else {
            return false;
        };
        for _ in 0..TRIES {
            if deliver(&url, body).await {
                return true;
            }
        }
        let mut inner = self.inner.lock().unwrap();
        let id = inner.failed.len() as u64 + 900;
        inner.failed.push((id, tag.to_owned(), body.to_owned()));
        false
    }

    /// Work notifications without the access token are refused from now on.
    pub fn require_token(&self) {
        self.inner.lock().unwrap().require_token = true;
    }

    /// The tenant's employees: (employeeCode, accountId).
    pub fn set_directory(&self, entries: &[(&str, &str)]) {
        self.inner.lock().unwrap().directory = entries
            .iter()
            .map(|(c, a)| ((*c).to_owned(), (*a).to_owned()))
            .collect();
    }

    /// The registered callbacks: (eventTag, callbackUrl).
    pub fn registrations(&self) -> Vec<(String, String)> {
        let inner = self.inner.lock().unwrap();
        inner
            .registrations
            .iter()
            .map(|(_, t, u)| (t.clone(), u.clone()))
            .collect()
    }

    pub fn failed_count(&self) -> usize {
        self.inner.lock().unwrap().failed.len()
    }

    pub fn rejected_signatures(&self) -> usize {
        self.inner.lock().unwrap().rejected_signatures
    }
}

/// The SDK's string to sign, independently: sorted by lowercased key, then value.
fn string_to_sign(
    method: &str,
    headers: &HeaderMap,
    path: &str,
    params: &[(String, String)],
) -> String {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by_key(|(k, v)| (k.to_lowercase(), v.clone()));
    let mut lines = vec![
        method.to_owned(),
        header("x-hmac-auth-timestamp").to_owned(),
        header("x-hmac-auth-nonce").to_owned(),
        path.to_owned(),
    ];
    if !sorted.is_empty() {
        let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(joined.join("&"));
    }
    lines.join("\n")
}

fn expected_signature(text: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The gateway's answer to one signed call that got through, by path.
async fn answer(s: &Arc<Mutex<Inner>>, path: &str, params: &[(String, String)]) -> Value {
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    let ok = |data: Value| json!({"success": true, "responseCode": "0", "data": data});
    let refuse =
        |code: &str, m: &str| json!({"success": false, "responseCode": code, "responseMessage": m});
    match path {
        "/message/workNotification" => {
            let mut inner = s.lock().unwrap();
            if inner.require_token && get("access_token").as_deref() != Some(TOKEN) {
                refuse("401", "access_token 无效")
            } else if get("tenantId").as_deref() != Some(TENANT) {
                refuse("400", "tenantId 无效")
            } else if get("receiverIds").is_none() && get("organizationCodes").is_none() {
                refuse("400", "receiverIds 和 organizationCodes 不能同时为空")
            } else if get("msg")
                .is_none_or(|m| m.len() > 2048 || serde_json::from_str::<Value>(&m).is_err())
            {
                refuse("400", "msg 无效")
            } else if !inner.seen.insert(get("bizMsgId").unwrap_or_default()) {
                refuse("500", "bizMsgId重复")
            } else {
                ok(json!({"msgId": format!("msg{}", inner.calls.len())}))
            }
        }
        "/openplatform/message/register_event_callback" => {
            let (Some(tag), Some(url)) = (get("eventTag"), get("callbackUrl")) else {
                return refuse("400", "eventTag 和 callbackUrl 必填");
            };
            // The gateway checks the URL before it accepts it (its connectivity check).
            let check =
                json!({"eventTag": tag, "dispatchId": "0e276c97-c3f9-44c2-88ab-335123991c45"});
            if !deliver(&url, &check.to_string()).await {
                return refuse("500", "回调地址连通性检查失败");
            }
            let mut inner = s.lock().unwrap();
            inner.registrations.retain(|(_, t, _)| *t != tag);
            let id = inner.registrations.len() as u64 + 100;
            inner.registrations.push((id, tag, url));
            ok(json!({"eventCallbackId": id}))
        }
        "/openplatform/message/query_callback_define" => {
            let inner = s.lock().unwrap();
            let list: Vec<Value> = inner
                .registrations
                .iter()
                .map(|(id, tag, url)| json!({"eventCallbackId": id, "eventTag": tag, "callbackUrl": url}))
                .collect();
            ok(Value::Array(list))
        }
        "/openplatform/message/query_callback_failed" => {
            let inner = s.lock().unwrap();
            let list: Vec<Value> = inner
                .failed
                .iter()
                .map(|(id, tag, _)| json!({"eventCallbackFailedId": id, "eventTag": tag}))
                .collect();
            ok(Value::Array(list))
        }
        "/openplatform/message/retry_callback_failed" => {
            let id: u64 = get("eventCallbackFailedId")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            let found = {
                let inner = s.lock().unwrap();
                inner
                    .failed
                    .iter()
                    .find(|(i, ..)| *i == id)
                    .map(|(_, tag, body)| {
                        let url = inner
                            .registrations
                            .iter()
                            .find(|(_, t, _)| t == tag)
                            .map(|(_, _, u)| u.clone());
                        (url, body.clone())
                    })
            };
            match found {
                Some((Some(url), body)) if deliver(&url, &body).await => {
                    s.lock().unwrap().failed.retain(|(i, ..)| *i != id);
                    ok(json!(true))
                }
                Some(_) => refuse("500", "重试失败"),
                None => refuse("404", "没有这条失败记录"),
            }
        }
        "/message/revoke" => ok(json!(true)),
        "/gettoken.json" => {
            if get("appkey").as_deref() != Some(APP_KEY)
                || get("appsecret").as_deref() != Some(APP_SECRET)
            {
                return refuse("401", "appkey 或 appsecret 错误");
            }
            ok(json!({"accessToken": TOKEN, "expiresIn": "7200"}))
        }
        "/mozi/employee/listEmployeeAccountIds" => {
            let codes: Vec<&String> = params
                .iter()
                .filter(|(k, _)| k == "employeeCodes")
                .map(|(_, v)| v)
                .collect();
            if codes.len() > 100 {
                return refuse("400", "employeeCodes 最多 100 个");
            }
            if get("tenantId").as_deref() != Some(TENANT) {
                return refuse("400", "tenantId 无效");
            }
            let inner = s.lock().unwrap();
            let found: Vec<Value> = codes
                .iter()
                .filter_map(|c| inner.directory.iter().find(|(code, _)| code == *c))
                .map(|(code, id)| json!({"employeeCode": code, "accountId": id.parse::<u64>().unwrap_or(0)}))
                .collect();
            ok(Value::Array(found))
        }
        _ => refuse("404", "unknown api"),
    }
}

/// One callback POST as the gateway sends it; whether the answer was exactly the success body.
async fn deliver(url: &str, body: &str) -> bool {
    let resp = crate::http_client()
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(body.to_owned())
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|t| t == SUCCESS),
        _ => false,
    }
}

async fn handle(
    State(s): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let form = if method == Method::GET {
        uri.query().unwrap_or("").as_bytes().to_vec()
    } else {
        body.to_vec()
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&form).into_owned().collect();
    {
        let mut inner = s.lock().unwrap();
        let signed = headers.get("apikey").and_then(|v| v.to_str().ok()) == Some(APP_KEY)
            && headers
                .get("x-hmac-auth-version")
                .and_then(|v| v.to_str().ok())
                == Some("1.0")
            && headers
                .get("x-hmac-auth-timestamp")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.ends_with("+08:00"))
            && headers
                .get("x-hmac-auth-signature")
                .and_then(|v| v.to_str().ok())
                == Some(
                    expected_signature(&string_to_sign(method.as_str(), &headers, &path, &params))
                        .as_str(),
                );
        if !signed {
            inner.rejected_signatures += 1;
            let body = json!({"success": false, "Code": "OPF-B001-05-16-0009", "Message": "SignatureDoesNotMatch",
                "_RequestId": "fake-req", "HostId": "openplatform-pro.ding.zj.gov.cn"});
            return (StatusCode::OK, body.to_string()).into_response();
        }
        inner.calls.push(Call {
            path: path.clone(),
            params: params.clone(),
        });
        if let Some((status, body)) = inner.injected.pop_front() {
            return (StatusCode::from_u16(status).unwrap(), body).into_response();
        }
    }
    let business = answer(&s, &path, &params).await;
    let mut inner = s.lock().unwrap();
    if inner.lose_answers > 0 {
        inner.lose_answers -= 1;
        return (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response();
    }
    let content = if inner.content_as_text {
        Value::String(business.to_string())
    } else {
        business
    };
    (
        StatusCode::OK,
        json!({"success": true, "content": content}).to_string(),
    )
        .into_response()
}
