//! 浙政钉 (Zhejiang government DingTalk) work notifications through the open-platform gateway:
//! `/message/workNotification`, every request HMAC-signed like the official SDK. See
//! official Java SDK (zwdd-sdk-java 1.2.0).
//!
//! Each delivery gets a `bizMsgId` derived from its own key, so a resend after a timeout
//! carries the same one and the gateway's "重复" answer proves the first attempt arrived.

mod api;
mod preflight;
mod render;
#[cfg(feature = "cli")]
mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub use api::{
    Answer, EMPLOYEES_PATH, Gateway, REVOKE_PATH, SEND_PATH, judge, signature, string_to_sign,
};
pub use render::*;

use super::{CallCounter, Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::connectors::dingtalk_msg::NoticeFormat;
use crate::event::{Action, Delivery, Failure, Millis, Outcome, now_ms};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::{CacheStore, ReceiptStore, StoreError};

pub const CONNECTOR: &str = "govding";

// ---- config: [connectors.govding] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovDingConfig {
    /// `https://openplatform-pro.ding.zj.gov.cn` (浙政钉 production) or
    /// `https://openplatform.dg-work.cn` (SaaS and test).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The app's AppKey and AppSecret. Both absent: dry-run (render and record only).
    pub app_key: Option<String>,
    pub app_secret: Option<SecretRef>,
    /// The tenant the notifications go to.
    pub tenant_id: String,
    /// `hmac_sha256` (the SDK's default) or `md5`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Sent as `X-Hmac-Auth-IP` / `X-Hmac-Auth-MAC` when set (the gateway is not known to check).
    pub auth_ip: Option<String>,
    /// Sent as `X-Hmac-Auth-MAC` when set.
    pub auth_mac: Option<String>,
    /// Error codes that mean "this bizMsgId was sent before", besides answers saying 重复.
    #[serde(default)]
    pub duplicate_codes: Vec<String>,
    /// How messages that are not to-do cards read: `markdown` or `text`.
    #[serde(default)]
    pub notice_format: NoticeFormat,
    /// Where an OA card links when the source gave no URL.
    pub default_url: Option<String>,
    /// `msgApp` for revokes when no receipt of the message captured it.
    pub msg_app: Option<String>,
    /// Recipients that are not numeric accountIds are employee codes: look their accountIds
    /// up (`/mozi/employee/listEmployeeAccountIds`) and keep them until a contacts callback
    /// says the employee changed, or `employee_cache_secs` pass.
    #[serde(default)]
    pub employee_codes: bool,
    /// How long a looked-up accountId is kept, in seconds (a contacts callback drops it sooner).
    #[serde(default = "default_employee_cache")]
    pub employee_cache_secs: u64,
    /// Add an `access_token` (from `/gettoken.json`, kept until 5 minutes before it expires)
    /// to work notifications: no public example needs it, a tenant may.
    #[serde(default)]
    pub send_access_token: bool,
    /// Seconds each call to the gateway may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    HmacSha256,
    Md5,
}

fn default_employee_cache() -> u64 {
    86_400
}

fn default_base_url() -> String {
    "https://openplatform-pro.ding.zj.gov.cn".into()
}

/// The `bizMsgId` of a delivery: `hb-` and 32 hex digits of SHA-256 over its key, the same on
/// every resend and different for every delivery (chunks are deliveries of their own).
pub fn biz_msg_id(d: &Delivery) -> String {
    let digest = Sha256::digest(format!("{}|{}", d.pk, d.sk).as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!("hb-{hex}")
}

/// The signed client for `[connectors.govding]` (also for `hookbridge govding` commands).
pub async fn connect(config: &GovDingConfig, secrets: &Secrets) -> Result<Gateway, ConfigError> {
    match (&config.app_key, &config.app_secret) {
        (Some(key), Some(secret)) => gateway(config, key, secrets.resolve(secret).await?),
        _ => Err(ConfigError::Invalid(
            "connectors.govding needs app_key and app_secret for this".into(),
        )),
    }
}

fn gateway(config: &GovDingConfig, key: &str, secret: String) -> Result<Gateway, ConfigError> {
    Gateway::new(config, key.to_owned(), secret)
        .map_err(|e| ConfigError::Invalid(format!("connectors.govding: HTTP client: {e}")))
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `(employeeCode, accountId)` pairs of a `listEmployeeAccountIds` answer: a list of objects,
/// directly or under `data`, ids as numbers or text (its shape is unconfirmed).
fn account_ids(content: &Value) -> Vec<(String, String)> {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    content
        .as_array()
        .or_else(|| content.get("data").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .filter_map(|o| Some((text(o.get("employeeCode"))?, text(o.get("accountId"))?)))
        .collect()
}

/// What `/message/revoke` needs for a sent delivery: its `bizMsgId`, and `msgType`/`msgApp`
/// from the receipts the gateway sent about it when they carry them, else `msg_app` from the
/// config, else the AppKey's first two `_`-separated parts as public clients derive it
/// (unconfirmed by the vendor); the last item says which was used.
pub fn revoke_params(
    d: &Delivery,
    config: &GovDingConfig,
) -> Result<(String, String, String, &'static str), String> {
    let biz = d
        .result
        .as_ref()
        .and_then(|r| r.get("bizMsgId"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("delivery {} was not sent to 浙政钉 (no bizMsgId)", d.key()))?;
    let seen = |k: &str| {
        d.receipts
            .iter()
            .rev()
            .find_map(|r| r.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()))
            .map(str::to_owned)
    };
    let msg_type = seen("msgType").unwrap_or_else(|| "workNotification".into());
    let (msg_app, from) = match (seen("msgApp"), &config.msg_app) {
        (Some(app), _) => (app, "its receipts"),
        (None, Some(app)) => (app.clone(), "config"),
        (None, None) => {
            let key = config.app_key.as_deref().unwrap_or("");
            let parts: Vec<&str> = key.split('_').take(2).collect();
            (parts.join("_"), "derived from app_key")
        }
    };
    Ok((biz.to_owned(), msg_type, msg_app, from))
}

pub struct GovDing {
    /// `None`: no credentials, dry-run.
    client: Option<Gateway>,
    /// Which delivery each bizMsgId is, for the receipts the gateway sends back.
    receipts: Arc<dyn ReceiptStore>,
    /// Employee codes' accountIds, as looked up.
    cache: Arc<dyn CacheStore>,
    tenant_id: String,
    cache_ms: Millis,
    /// `Some(app_key)` when work notifications carry an access token.
    token_for: Option<String>,
    /// For a recall's msgType/msgApp ([`revoke_params`]).
    config: GovDingConfig,
}

#[async_trait]
impl ConnectorPart for GovDing {
    type Config = GovDingConfig;
    type RouteOptions = super::NoRouteOptions;
    /// The 浙政钉 app's IP whitelist (访问IP不在白名单中).
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "浙政钉",
        place: "the 浙政钉 open platform: the app → IP 白名单. Without it every call is refused (访问IP不在白名单中)",
    });

    fn check(config: &GovDingConfig) -> Result<(), ConfigError> {
        if config.app_key.is_some() != config.app_secret.is_some() {
            return Err(ConfigError::Invalid(
                "connectors.govding: set both app_key and app_secret, or neither for dry-run"
                    .into(),
            ));
        }
        if config.tenant_id.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "connectors.govding.tenant_id is the tenant the notifications go to".into(),
            ));
        }
        Ok(())
    }

    fn render(config: &GovDingConfig) -> Arc<dyn Render> {
        Arc::new(GovDingRender::from(config))
    }

    async fn build(
        config: &GovDingConfig,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let client = match (&config.app_key, &config.app_secret) {
            (Some(key), Some(secret)) => {
                let secret = secrets.resolve(secret).await?;
                let calls = CallCounter::new(ports.usage.clone(), format!("{CONNECTOR}#{key}"));
                Some(gateway(config, key, secret)?.counted(calls))
            }
            _ => {
                warn!("浙政钉 has no app_key/app_secret: dry-run, requests are recorded, not sent");
                None
            }
        };
        Ok(Arc::new(GovDing {
            client,
            receipts: ports.receipts.clone(),
            cache: ports.cache.clone(),
            tenant_id: config.tenant_id.clone(),
            token_for: config
                .send_access_token
                .then(|| config.app_key.clone().unwrap_or_default()),
            cache_ms: i64::try_from(config.employee_cache_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            config: config.clone(),
        }))
    }

    #[cfg(feature = "cli")]
    fn tool() -> Option<crate::tools::Tool> {
        Some(tools::tool())
    }
}

#[async_trait]
impl Connector for GovDing {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    async fn preflight(&self, scope: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        self.preflight_checks(scope).await
    }

    fn dry_run(&self) -> bool {
        self.client.is_none()
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        match &d.action {
            Action::Send => self.send(d).await,
            Action::Own(a) if a == RECEIPT => self.note(d).await,
            Action::Own(a) if a == FORGET => self.forget(d).await,
            other @ Action::Own(_) => super::no_call("浙政钉", other),
            Action::Revoke => Outcome::Failed(Failure::Permanent(
                "revokes are made by the sender loop, through recall".into(),
            )),
        }
    }

    /// `/message/revoke` of a sent work notification, by its bizMsgId.
    async fn recall(&self, d: &Delivery, _now: Millis) -> Result<Value, Failure> {
        let (biz, msg_type, msg_app, from) =
            revoke_params(d, &self.config).map_err(Failure::Permanent)?;
        let body = json!({ "tenantId": self.tenant_id, "bizMsgId": biz, "msgType": msg_type, "msgApp": msg_app });
        let Some(client) = &self.client else {
            return Ok(json!({ "requests": [{ "path": REVOKE_PATH, "body": body }] }));
        };
        let answer = client
            .revoke(&self.tenant_id, &biz, &msg_type, &msg_app)
            .await?;
        let answer = match answer {
            Answer::Done(v) => v,
            Answer::AlreadySent(said) => json!(said),
        };
        Ok(json!({ "revoked": biz, "msgApp_from": from, "answer": answer }))
    }
}

impl GovDing {
    async fn send(&self, d: &Delivery) -> Outcome {
        let call: WorkNotification = match serde_json::from_value(d.message.clone()) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad 浙政钉 delivery: {e}")));
            }
        };
        let biz_msg_id = biz_msg_id(d);
        let Some(client) = &self.client else {
            let body: serde_json::Map<_, _> = [
                ("tenantId", &call.tenant_id),
                ("receiverIds", &call.receiver_ids),
                ("employeeCodes (looked up when sent)", &call.employee_codes),
                ("organizationCodes", &call.organization_codes),
                ("bizMsgId", &biz_msg_id),
                ("msg", &call.msg),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
            return Outcome::DryRun(json!({ "requests": [{ "path": SEND_PATH, "body": body }] }));
        };
        let (receivers, unknown) = match self.receivers(client, &call).await {
            Ok(r) => r,
            Err(f) => return Outcome::Failed(f),
        };
        if receivers.is_empty() && call.organization_codes.is_empty() {
            return Outcome::Failed(Failure::Permanent(format!(
                "浙政钉 knows no accountId for employee codes {}",
                unknown.join(", ")
            )));
        }
        let receiver_ids = receivers.join(",");
        let token = match self.access_token(client).await {
            Ok(t) => t.unwrap_or_default(),
            Err(f) => return Outcome::Failed(f),
        };
        let params = [
            ("tenantId", call.tenant_id.as_str()),
            ("receiverIds", receiver_ids.as_str()),
            ("organizationCodes", call.organization_codes.as_str()),
            ("bizMsgId", biz_msg_id.as_str()),
            ("msg", call.msg.as_str()),
            ("access_token", token.as_str()),
        ];
        // Before the call, so that a receipt can never arrive for an id we do not know.
        if let Err(e) = self.receipts.link(CONNECTOR, &biz_msg_id, &d.key()).await {
            return Outcome::Failed(Failure::Transient(e.to_string()));
        }
        let mut result = json!({ "bizMsgId": biz_msg_id });
        if !unknown.is_empty() {
            result["unknownEmployeeCodes"] = json!(unknown);
        }
        match client.post(SEND_PATH, &params).await {
            Ok(Answer::Done(content)) => {
                result["msgId"] = content.get("msgId").cloned().unwrap_or(content);
                Outcome::Sent(result)
            }
            Ok(Answer::AlreadySent(said)) => {
                info!(biz_msg_id, %said, "浙政钉 had this bizMsgId already: an earlier attempt arrived");
                result["duplicate"] = json!(true);
                Outcome::Sent(result)
            }
            Err(f) => Outcome::Failed(f),
        }
    }

    /// The call's accountIds, with those of its employee codes (cached, else looked up 100 at a
    /// time), and the codes that have none.
    async fn receivers(
        &self,
        client: &Gateway,
        call: &WorkNotification,
    ) -> Result<(Vec<String>, Vec<String>), Failure> {
        let mut receivers: Vec<String> = split(&call.receiver_ids);
        let codes = split(&call.employee_codes);
        let now = now_ms();
        let name = |code: &str| format!("{CONNECTOR}#employee#{}#{code}", self.tenant_id);
        let store = |e: StoreError| Failure::Transient(e.to_string());
        let mut missing = vec![];
        for code in &codes {
            match self.cache.cached(&name(code), now).await.map_err(store)? {
                Some(id) => receivers.push(id),
                None => missing.push(code.as_str()),
            }
        }
        let mut unknown = vec![];
        for chunk in missing.chunks(100) {
            let mut params = vec![("tenantId", self.tenant_id.as_str())];
            params.extend(chunk.iter().map(|c| ("employeeCodes", *c)));
            let found = match client.post(EMPLOYEES_PATH, &params).await? {
                Answer::Done(content) => account_ids(&content),
                Answer::AlreadySent(said) => {
                    return Err(Failure::Permanent(format!(
                        "浙政钉 {EMPLOYEES_PATH}: {said}"
                    )));
                }
            };
            for code in chunk {
                match found.iter().find(|(c, _)| c == code) {
                    Some((_, id)) => {
                        let until = now.saturating_add(self.cache_ms);
                        self.cache
                            .cache(&name(code), id, until)
                            .await
                            .map_err(store)?;
                        receivers.push(id.clone());
                    }
                    None => unknown.push((*code).to_owned()),
                }
            }
        }
        Ok((receivers, unknown))
    }

    /// The access token, when work notifications carry one: kept in the cache until 5 minutes
    /// before it expires (asking again within its validity returns the same one).
    async fn access_token(&self, client: &Gateway) -> Result<Option<String>, Failure> {
        let Some(app_key) = &self.token_for else {
            return Ok(None);
        };
        let name = format!("{CONNECTOR}#token#{app_key}");
        let now = now_ms();
        let store = |e: StoreError| Failure::Transient(e.to_string());
        if let Some(token) = self.cache.cached(&name, now).await.map_err(store)? {
            return Ok(Some(token));
        }
        let (token, expires_in) = client.token().await?;
        let until = now + (expires_in - 300).max(60) * 1000;
        self.cache
            .cache(&name, &token, until)
            .await
            .map_err(store)?;
        Ok(Some(token))
    }

    /// Changed employees: drop their cached accountIds.
    async fn forget(&self, d: &Delivery) -> Outcome {
        for code in &d.recipients {
            let name = format!("{CONNECTOR}#employee#{}#{code}", self.tenant_id);
            if let Err(e) = self.cache.forget(&name).await {
                return Outcome::Failed(Failure::Transient(e.to_string()));
            }
        }
        Outcome::Sent(json!({ "forgot": d.recipients }))
    }

    /// Notes a receipt on the delivery its bizMsgId names.
    async fn note(&self, d: &Delivery) -> Outcome {
        let receipt: Receipt = match serde_json::from_value(d.message.clone()) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad 浙政钉 receipt: {e}")));
            }
        };
        let target = match self.receipts.linked(CONNECTOR, &receipt.biz_msg_id).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                return Outcome::Skipped(format!(
                    "no delivery of this hookbridge has bizMsgId {}",
                    receipt.biz_msg_id
                ));
            }
            Err(e) => return Outcome::Failed(Failure::Transient(e.to_string())),
        };
        match self.receipts.add_receipt(&target, &d.message).await {
            Ok(true) => Outcome::Sent(json!({ "noted_on": target.to_string() })),
            Ok(false) => Outcome::Skipped(format!("delivery {target} is gone (expired)")),
            Err(e) => Outcome::Failed(Failure::Transient(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(msg_app: Option<&str>) -> GovDingConfig {
        let mut c: GovDingConfig =
            toml::from_str("tenant_id = \"1\"\napp_key = \"zj_gov_hookbridge\"").unwrap();
        c.msg_app = msg_app.map(str::to_owned);
        c
    }

    #[test]
    fn a_revoke_takes_its_values_from_receipts_then_config_then_the_app_key() {
        let mut d = Delivery::new(
            "EVT#hap#m",
            CONNECTOR,
            0,
            Action::Send,
            vec![],
            Value::Null,
            0,
        );
        assert!(revoke_params(&d, &config(None)).is_err(), "never sent");
        d.result = Some(json!({ "bizMsgId": "hb-1" }));
        assert_eq!(
            revoke_params(&d, &config(None)).unwrap(),
            (
                "hb-1".into(),
                "workNotification".into(),
                "zj_gov".into(),
                "derived from app_key"
            )
        );
        assert_eq!(revoke_params(&d, &config(Some("mine"))).unwrap().2, "mine");
        d.receipts = vec![
            json!({ "status": "pushed", "msgType": "workNotification", "msgApp": "zjzwfw" }),
            json!({ "status": "read" }),
        ];
        let (_, msg_type, app, from) = revoke_params(&d, &config(Some("mine"))).unwrap();
        assert_eq!(
            (msg_type.as_str(), app.as_str(), from),
            ("workNotification", "zjzwfw", "its receipts")
        );
    }

    #[test]
    fn biz_msg_ids_are_stable_short_and_distinct() {
        let a = Delivery::new(
            "EVT#hap#m",
            CONNECTOR,
            0,
            Action::Send,
            vec![],
            Value::Null,
            0,
        );
        let b = Delivery::new(
            "EVT#hap#m",
            CONNECTOR,
            1,
            Action::Send,
            vec![],
            Value::Null,
            0,
        );
        assert_eq!(biz_msg_id(&a), biz_msg_id(&a.clone()));
        assert_ne!(biz_msg_id(&a), biz_msg_id(&b));
        assert!(biz_msg_id(&a).len() <= 64);
    }
}
