//! Feishu / Lark self-built apps (自建应用): app messages through `im/v1/messages`, one per
//! person (by open_id, user_id, union_id or email) or to a group chat; a to-do's card turned
//! 已处理 by `PATCH` (within 14 days); recall by `DELETE`. `render.rs` has the bodies, `api.rs`
//! the calls and their error classes; this file is the config and the connector the sender
//! loop calls. The tenant_access_token is the fleet's (`connectors/token.rs`).

mod api;
mod render;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::warn;

pub use api::judge;
pub use render::*;

use super::token::{self, TokenCache};
use super::{CallCounter, Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Action, Delivery, Failure, Millis, Outcome, Status, now_ms};
use crate::pacer::{PerRecipient, RateWindow};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::{HistoryStore, TokenRecord};
use api::{Api, MESSAGES_PATH, NOT_REACHABLE, TOKEN_PATH};

pub const CONNECTOR: &str = "feishu";

// ---- config: [connectors.feishu] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// The app's App ID (`cli_…`, 开发者后台 → 凭证与基础信息).
    pub app_id: String,
    /// The app's App Secret, a secret reference. Absent: dry-run, requests are recorded, not sent.
    pub app_secret: Option<SecretRef>,
    /// Feishu's API (`https://open.feishu.cn`), Lark's (`https://open.larksuite.com`), or a
    /// private deployment's.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How routes' recipients are named to Feishu, as `[recipients.feishu]` maps them.
    #[serde(default)]
    pub id_type: IdType,
    /// Calls a second at most from one sender (Feishu's limit is 50 an app).
    #[serde(default = "default_max_qps")]
    pub max_qps: u32,
    /// Messages a second to one person or chat. Feishu's limit is 5 (230020 beyond); raise it
    /// only for a private deployment that allows more.
    #[serde(default = "default_receiver_per_second")]
    pub receiver_per_second: u32,
    /// Seconds each call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_base_url() -> String {
    "https://open.feishu.cn".into()
}

fn default_receiver_per_second() -> u32 {
    5
}

fn default_max_qps() -> u32 {
    20
}

// ---- the connector ----

struct Live {
    api: Api,
    tokens: TokenCache,
    secret: String,
    /// Feishu takes 5 messages a second to one person or chat (230020 beyond).
    receivers: PerRecipient,
}

pub struct Feishu {
    app_id: String,
    live: Option<Live>,
    history: Arc<dyn HistoryStore>,
    /// The app's calls per month, for `hookbridge status`.
    calls: CallCounter,
}

/// Feishu's request de-duplication key for a delivery: the same delivery sent again within an
/// hour is one message.
fn uuid(d: &Delivery) -> String {
    let digest = Sha256::digest(d.key().to_string().as_bytes());
    hex::encode(&digest[..16])
}

impl Feishu {
    async fn fetch(&self, live: &Live) -> Result<TokenRecord, Failure> {
        let body = json!({ "app_id": self.app_id, "app_secret": live.secret });
        let v = live
            .api
            .call(Method::POST, TOKEN_PATH, &[], None, Some(&body))
            .await
            .map_err(|e| match e {
                token::ApiError::Failed(f) => f,
                token::ApiError::TokenExpired(m) => Failure::Permanent(m),
            })?;
        let t = v["tenant_access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Transient("Feishu tenant_access_token: none in the answer".into())
            })?;
        Ok(token::record(t.to_owned(), v["expire"].as_i64()))
    }

    /// One call with the fleet's token, refreshed once when Feishu calls it expired.
    async fn call(
        &self,
        live: &Live,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let call = |token: String| {
            let method = method.clone();
            async move { live.api.call(method, path, query, Some(&token), body).await }
        };
        let answer = live.tokens.call(|| self.fetch(live), call).await;
        if answer.is_ok() {
            self.calls.count();
        }
        answer
    }

    async fn send(&self, live: &Live, d: &Delivery) -> Outcome {
        let send: Send = match serde_json::from_value(d.message.clone()) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad Feishu message: {e}")));
            }
        };
        let mut body = send.body;
        body["uuid"] = json!(uuid(d));
        let query = [("receive_id_type", send.receive_id_type.as_str())];
        let receiver = [body["receive_id"].as_str().unwrap_or_default().to_owned()];
        if let Err(wait) = live.receivers.wait(&receiver).await {
            return Outcome::Failed(Failure::Throttled {
                reason: format!(
                    "Feishu takes 5 messages a second to one receiver: held for {}",
                    receiver[0]
                ),
                wait: Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX),
            });
        }
        match self
            .call(live, Method::POST, MESSAGES_PATH, &query, Some(&body))
            .await
        {
            Ok(v) => Outcome::Sent(json!({
                "message_id": v["data"]["message_id"],
                "sent_at": now_ms(),
            })),
            Err(Failure::Permanent(m))
                if NOT_REACHABLE
                    .iter()
                    .any(|c| m.contains(&format!("code {c}:"))) =>
            {
                Outcome::Undelivered {
                    result: json!({}),
                    reason: format!(
                        "{m} ({} {}: no such person for this app, or outside its availability)",
                        send.receive_id_type, body["receive_id"]
                    ),
                }
            }
            Err(f) => Outcome::Failed(f),
        }
    }

    /// Turns a finished to-do's cards green, reading 已处理; a card past Feishu's 14 days, or
    /// recalled, is left as it is and said in the result.
    async fn update_cards(&self, live: &Live, d: &Delivery) -> Outcome {
        let update: CardUpdate = match serde_json::from_value(d.message.clone()) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(Failure::Permanent(format!("bad card update: {e}"))),
        };
        let all = match self.history.deliveries_of(&update.event).await {
            Ok(all) => all,
            Err(e) => return Outcome::Failed(Failure::Transient(e.to_string())),
        };
        let cards: Vec<Delivery> = all
            .into_iter()
            .filter(|c| c.connector == CONNECTOR && c.action == Action::Send)
            .filter(|c| c.message["body"]["msg_type"] == "interactive")
            .collect();
        if let Some(c) = cards.iter().find(|c| !c.status.is_final()) {
            return Outcome::Wait(format!(
                "card {} is {}; it can change once it is sent",
                c.sk,
                c.status.as_str()
            ));
        }
        let (mut updated, mut left) = (vec![], vec![]);
        for c in cards
            .iter()
            .filter(|c| c.was_sent() && c.status == Status::Sent)
        {
            let result = c.result.clone().unwrap_or_default();
            let Some(id) = result["message_id"].as_str() else {
                continue;
            };
            if now_ms() - result["sent_at"].as_i64().unwrap_or(0) >= CARD_WINDOW {
                left.push(json!({ "message_id": id, "why": "sent more than 14 days ago" }));
                continue;
            }
            let sent: Value =
                serde_json::from_str(c.message["body"]["content"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
            let body = json!({ "content": turned(&sent, &update).to_string() });
            let path = format!("{MESSAGES_PATH}/{id}");
            match self
                .call(live, Method::PATCH, &path, &[], Some(&body))
                .await
            {
                Ok(_) => updated.push(id.to_owned()),
                Err(Failure::Permanent(m)) => left.push(json!({ "message_id": id, "why": m })),
                Err(f) => return Outcome::Failed(f),
            }
        }
        if updated.is_empty() && left.is_empty() {
            return Outcome::Skipped(format!("no Feishu card was sent for {}", update.event));
        }
        Outcome::Sent(json!({ "updated": updated, "left": left }))
    }
}

#[async_trait]
impl ConnectorPart for Feishu {
    type Config = FeishuConfig;
    type RouteOptions = FeishuRoute;
    /// An app may take calls only from the addresses its security settings list.
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "A Feishu app",
        place: "开发者后台 → the app → 安全设置 → IP 白名单, when the app has one",
    });

    fn render(config: &FeishuConfig) -> Arc<dyn Render> {
        Arc::new(Style {
            id_type: config.id_type,
        })
    }

    async fn build(
        config: &FeishuConfig,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let live = match &config.app_secret {
            Some(s) => {
                let http =
                    crate::http::client(Duration::from_secs(config.timeout_secs)).map_err(|e| {
                        ConfigError::Invalid(format!("connectors.feishu: HTTP client: {e}"))
                    })?;
                Some(Live {
                    api: Api::new(http, &config.base_url, config.max_qps),
                    tokens: TokenCache::new(
                        format!("{CONNECTOR}#{}", config.app_id),
                        ports.tokens.clone(),
                    ),
                    secret: secrets.resolve(s).await?,
                    receivers: RateWindow::per_second(config.receiver_per_second).per_recipient(),
                })
            }
            None => {
                warn!("Feishu has no app_secret: dry-run, requests are recorded, not sent");
                None
            }
        };
        Ok(Arc::new(Feishu {
            app_id: config.app_id.clone(),
            live,
            history: ports.history.clone(),
            calls: CallCounter::new(
                ports.usage.clone(),
                format!("{CONNECTOR}#{}", config.app_id),
            ),
        }))
    }
}

#[async_trait]
impl Connector for Feishu {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// A tenant_access_token proves the app id and secret (and its IP whitelist) without
    /// sending anything.
    async fn preflight(&self, _: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        use crate::preflight::Check;
        let part = format!("{CONNECTOR} app {}", self.app_id);
        vec![match &self.live {
            None => Check::note(&part, "dry-run (no app_secret): nothing is sent"),
            Some(live) => match self.fetch(live).await {
                Ok(_) => Check::pass(
                    &part,
                    "tenant_access_token answered: the app id and secret work",
                ),
                Err(f) => Check::fail(&part, f.to_string()),
            },
        }]
    }

    fn dry_run(&self) -> bool {
        self.live.is_none()
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        let Some(live) = &self.live else {
            return super::recorded(d);
        };
        match &d.action {
            Action::Send => self.send(live, d).await,
            Action::Own(a) if a == UPDATE_CARD => self.update_cards(live, d).await,
            other => super::no_call("Feishu", other),
        }
    }

    /// Takes back one sent message (`DELETE`); Feishu says how long it allows.
    async fn recall(&self, d: &Delivery, _now: Millis) -> Result<Value, Failure> {
        let id = d
            .result
            .as_ref()
            .and_then(|r| r["message_id"].as_str())
            .filter(|_| d.was_sent() && d.status == Status::Sent)
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "delivery {} is not a sent Feishu message (it has no message_id)",
                    d.key()
                ))
            })?
            .to_owned();
        let path = format!("{MESSAGES_PATH}/{id}");
        let Some(live) = &self.live else {
            return Ok(json!({ "requests": [{ "method": "DELETE", "path": path }] }));
        };
        self.call(live, Method::DELETE, &path, &[], None).await?;
        Ok(json!({ "recalled_message_id": id }))
    }
}
