//! 浙政钉 (Zhejiang government DingTalk) work notifications through the open-platform gateway:
//! `/message/workNotification`, every request HMAC-signed like the official SDK. See
//! `protocols/govding.md` Part 2.
//!
//! Each delivery gets a `bizMsgId` derived from its own key, so a resend after a timeout
//! carries the same one and the gateway's "重复" answer proves the first attempt arrived.

mod api;
mod render;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub use api::{Answer, Gateway, SEND_PATH, judge, signature, string_to_sign};
pub use render::*;

use super::{Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::connectors::dingtalk::NoticeFormat;
use crate::event::{Action, Delivery, Failure, Outcome};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::ReceiptStore;

pub const CONNECTOR: &str = "govding";

// ---- config: [connectors.govding] ----

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
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    HmacSha256,
    Md5,
}

fn default_base_url() -> String {
    "https://openplatform-pro.ding.zj.gov.cn".into()
}

/// The `bizMsgId` of a delivery: `hb-` and 32 hex digits of SHA-256 over its key, the same on
/// every resend and different for every delivery (chunks are deliveries of their own).
pub fn biz_msg_id(d: &Delivery) -> String {
    let digest = Sha256::digest(format!("{}|{}", d.pk, d.sk).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
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

/// `msgApp` for a revoke when no receipt captured it: config, else the AppKey's first two
/// `_`-separated parts, as public clients derive it (protocol 2.9, unconfirmed).
pub fn msg_app(config: &GovDingConfig) -> (String, &'static str) {
    if let Some(app) = &config.msg_app {
        return (app.clone(), "config");
    }
    let key = config.app_key.as_deref().unwrap_or("");
    let parts: Vec<&str> = key.split('_').take(2).collect();
    (parts.join("_"), "derived from app_key")
}

pub struct GovDing {
    /// `None`: no credentials, dry-run.
    client: Option<Gateway>,
    /// Which delivery each bizMsgId is, for the receipts the gateway sends back.
    receipts: Arc<dyn ReceiptStore>,
}

#[async_trait]
impl ConnectorPart for GovDing {
    type Config = GovDingConfig;

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
                Some(gateway(config, key, secret)?)
            }
            _ => {
                warn!("浙政钉 has no app_key/app_secret: dry-run, requests are recorded, not sent");
                None
            }
        };
        Ok(Arc::new(GovDing {
            client,
            receipts: ports.receipts.clone(),
        }))
    }
}

#[async_trait]
impl Connector for GovDing {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn dry_run(&self) -> bool {
        self.client.is_none()
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        match d.action {
            Action::Send => self.send(d).await,
            Action::Receipt => self.note(d).await,
            Action::UpdateStatus => Outcome::Skipped(
                "浙政钉 has no documented way to change a sent notification".into(),
            ),
        }
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
        let params = [
            ("tenantId", call.tenant_id.as_str()),
            ("receiverIds", call.receiver_ids.as_str()),
            ("organizationCodes", call.organization_codes.as_str()),
            ("bizMsgId", biz_msg_id.as_str()),
            ("msg", call.msg.as_str()),
        ];
        let Some(client) = &self.client else {
            let body: serde_json::Map<_, _> = params
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            return Outcome::DryRun(json!({ "requests": [{ "path": SEND_PATH, "body": body }] }));
        };
        // Before the call, so that a receipt can never arrive for an id we do not know.
        if let Err(e) = self.receipts.link(CONNECTOR, &biz_msg_id, &d.key()).await {
            return Outcome::Failed(Failure::Transient(e.to_string()));
        }
        match client.post(SEND_PATH, &params).await {
            Ok(Answer::Done(content)) => {
                let msg_id = content.get("msgId").cloned().unwrap_or(content);
                Outcome::Sent(json!({ "bizMsgId": biz_msg_id, "msgId": msg_id }))
            }
            Ok(Answer::AlreadySent(said)) => {
                info!(biz_msg_id, %said, "浙政钉 had this bizMsgId already: an earlier attempt arrived");
                Outcome::Sent(json!({ "bizMsgId": biz_msg_id, "duplicate": true }))
            }
            Err(f) => Outcome::Failed(f),
        }
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
