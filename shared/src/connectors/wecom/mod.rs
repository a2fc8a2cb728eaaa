//! WeCom (企业微信) internal apps (自建应用): app messages to people through `message/send`,
//! a to-do's card changed to 已处理 through `update_template_card`, recall within 24 hours.
//! `render.rs` has the bodies, `api.rs` the calls and their error classes; this file is the
//! config and the connector the sender loop calls. The access token is the fleet's
//! (`connectors/token.rs`): one `gettoken` per token lifetime for the whole deployment.

mod api;
mod render;
mod users;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

pub use api::{SEND_PATH, judge};
pub use render::*;
pub use users::UsersBy;

use super::token::{self, TokenCache};
use super::{CallCounter, Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Action, Delivery, Failure, Millis, Outcome, Status, beijing_day, now_ms};
use crate::pacer::{PerRecipient, RateWindow};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::{HistoryStore, TokenRecord, UsageStore};
use api::{Api, RECALL_PATH, TOKEN_PATH, UPDATE_CARD_PATH};
use users::Directory;

pub const CONNECTOR: &str = "wecom";

// ---- config: [connectors.wecom] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// The organisation's 企业ID (管理后台 → 我的企业).
    pub corp_id: String,
    /// The app's AgentId (应用管理 → the app).
    pub agent_id: i64,
    /// The app's Secret, a secret reference. Absent: dry-run, requests are recorded, not sent.
    pub secret: Option<SecretRef>,
    /// WeCom's API, or a private deployment's.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Seconds within which WeCom drops a send identical to one it showed (its duplicate
    /// check; at most 14400), so a send retried after a lost answer shows once.
    #[serde(default = "default_duplicate_check")]
    pub duplicate_check_secs: u32,
    /// How routes' recipients (after `[recipients.wecom]`) name people: `userid`, or `mobile`
    /// or `email`, each looked up once a process (the app needs to see those members).
    #[serde(default)]
    pub users_by: UsersBy,
    /// The organisation's 账号上限 (管理后台 → 我的企业 → 企业信息). WeCom lets an app send
    /// `account_limit` × 200 person-messages a Beijing day; hookbridge counts them and holds
    /// sends that would pass the day's limit until the next day. 0: counted, not held.
    #[serde(default)]
    pub account_limit: u64,
    /// Messages from the app to one person in any minute. WeCom's limit is 30 and it drops
    /// the rest without an error; raise it only for a private deployment (私有化) that allows more.
    #[serde(default = "default_person_per_minute")]
    pub person_per_minute: u32,
    /// Messages from the app to one person in any hour (WeCom's: 1,000, the rest dropped).
    #[serde(default = "default_person_per_hour")]
    pub person_per_hour: u32,
    /// Calls a second at most from one sender.
    #[serde(default = "default_max_qps")]
    pub max_qps: u32,
    /// Seconds each call may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_base_url() -> String {
    "https://qyapi.weixin.qq.com".into()
}

fn default_duplicate_check() -> u32 {
    1800
}

fn default_person_per_minute() -> u32 {
    30
}

fn default_person_per_hour() -> u32 {
    1000
}

fn default_max_qps() -> u32 {
    20
}

// ---- the connector ----

struct Live {
    api: Api,
    tokens: TokenCache,
    secret: String,
    /// WeCom drops, without an error, an app's messages to one person beyond 30 a minute and
    /// 1,000 an hour; the sender runs one instance at a time, so these windows are the fleet's.
    people: PerRecipient,
    directory: Directory,
}

/// A send as WeCom answered it, and whom it was for.
struct Sent {
    answer: Value,
    userids: Vec<String>,
    /// Recipients a lookup found nobody for.
    unknown: Vec<String>,
}

/// Person-messages an app may send a day for each account of the organisation's 账号上限.
const PER_ACCOUNT_A_DAY: u64 = 200;

pub struct WeCom {
    corp_id: String,
    agent_id: i64,
    /// Person-messages a Beijing day (0: not held).
    daily_limit: u64,
    /// The day's count of person-messages as this process last saw the fleet's.
    today: Mutex<(String, u64)>,
    live: Option<Live>,
    history: Arc<dyn HistoryStore>,
    usage: Arc<dyn UsageStore>,
    /// The app's calls per month, for `hookbridge status`.
    calls: CallCounter,
}

/// Whom a send's answer says WeCom did not take.
fn invalid(answer: &Value) -> Vec<String> {
    [&answer["invaliduser"], &answer["unlicenseduser"]]
        .into_iter()
        .flat_map(ids)
        .collect()
}

/// `|`-joined ids as a list.
fn ids(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .split('|')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl WeCom {
    fn people_name(&self) -> String {
        format!("{CONNECTOR}#{}#{}#people", self.corp_id, self.agent_id)
    }

    /// Whether `people` more fit in the day's limit as last counted (asking the store once a
    /// day per process); else how long until the next Beijing day.
    async fn day_room(&self, people: u64) -> Result<(), Millis> {
        if self.daily_limit == 0 {
            return Ok(());
        }
        let now = now_ms();
        let (day, next) = beijing_day(now);
        let seen = {
            let today = self.today.lock().unwrap_or_else(|e| e.into_inner());
            (today.0 == day).then_some(today.1)
        };
        let seen = match seen {
            Some(n) => n,
            // Adding nothing reads the fleet's count.
            None => match self
                .usage
                .add_usage(&self.people_name(), &day, 0, self.daily_limit)
                .await
            {
                Ok(n) => {
                    *self.today.lock().unwrap_or_else(|e| e.into_inner()) = (day, n);
                    n
                }
                Err(e) => {
                    warn!(error = %e, "today's person-messages could not be read");
                    0
                }
            },
        };
        if seen + people > self.daily_limit {
            return Err(next - now);
        }
        Ok(())
    }

    /// Counts `people` person-messages sent today; warns at 80 % and 100 % of the day's limit.
    async fn count_people(&self, people: u64) {
        let (day, _) = beijing_day(now_ms());
        let name = self.people_name();
        match self
            .usage
            .add_usage(&name, &day, people, self.daily_limit)
            .await
        {
            Ok(total) => {
                *self.today.lock().unwrap_or_else(|e| e.into_inner()) = (day, total);
                if let Some(mark) = super::quota_crossed(total, people, self.daily_limit) {
                    warn!(
                        total, limit = self.daily_limit, app = %name,
                        "{mark} % of the WeCom app's person-messages for today are sent \
                         (connectors.wecom.account_limit × 200); at 100 % sends wait for the next day"
                    );
                }
            }
            Err(e) => warn!(error = %e, "these person-messages could not be counted"),
        }
    }

    async fn fetch(&self, live: &Live) -> Result<TokenRecord, Failure> {
        let query = [
            ("corpid", self.corp_id.as_str()),
            ("corpsecret", live.secret.as_str()),
        ];
        token::issued("WeCom", live.api.call(TOKEN_PATH, &query, None).await)
    }

    /// Calls an API with the fleet's token; on a token error, refreshes once and retries.
    async fn call(&self, live: &Live, path: &'static str, body: &Value) -> Result<Value, Failure> {
        let call = |token: String| async move {
            live.api
                .call(path, &[("access_token", &token)], Some(body))
                .await
        };
        let answer = live.tokens.call(|| self.fetch(live), call).await;
        if answer.is_ok() {
            self.calls.count();
        }
        answer
    }

    /// One `message/send` within WeCom's limits on messages: each person's windows and the
    /// app's day; the people it reached are counted.
    async fn message(&self, live: &Live, body: &Value) -> Result<Sent, Failure> {
        let lookup = |path, body: Value| async move { self.call(live, path, &body).await };
        let users::Resolved { userids, unknown } = live
            .directory
            .resolve(&ids(&body["touser"]), lookup)
            .await?;
        let audience = body.get("toparty").is_some() || body.get("totag").is_some();
        if userids.is_empty() && !audience {
            return Ok(Sent {
                answer: json!({}),
                userids,
                unknown,
            });
        }
        let mut body = body.clone();
        body["touser"] = json!(userids.join("|"));
        let named: Vec<String> = userids.iter().filter(|u| *u != "@all").cloned().collect();
        let throttled = |reason: String, wait: Millis| Failure::Throttled { reason, wait };
        if let Err(wait) = live.people.wait(&named).await {
            return Err(throttled(
                format!(
                    "WeCom drops an app's messages to one person beyond 30 a minute and 1,000 an \
                     hour: held for {}",
                    named.join(", ")
                ),
                Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX),
            ));
        }
        if let Err(wait) = self.day_room(named.len() as u64).await {
            return Err(throttled(
                format!(
                    "the WeCom app's {} person-messages for today are sent \
                     (connectors.wecom.account_limit × 200): held until the next day",
                    self.daily_limit
                ),
                wait,
            ));
        }
        let answer = self.call(live, SEND_PATH, &body).await?;
        let invalid = invalid(&answer);
        let reached = named.iter().filter(|u| !invalid.contains(u)).count();
        self.count_people(reached as u64).await;
        Ok(Sent {
            answer,
            userids,
            unknown,
        })
    }

    /// One `message/send`: sent to whom WeCom took, undelivered when it took nobody.
    async fn send(&self, live: &Live, d: &Delivery) -> Outcome {
        let body = &d.message;
        match self.message(live, body).await {
            Ok(Sent {
                answer,
                userids,
                unknown,
            }) => {
                let mut invalid = invalid(&answer);
                let mut result = json!({ "msgid": answer["msgid"], "sent_at": now_ms() });
                if let Some(code) = answer["response_code"].as_str() {
                    result["response_code"] = json!(code);
                }
                if userids != ids(&body["touser"]) {
                    // Looked up: the card's update names the people by these.
                    result["userids"] = json!(userids);
                }
                let audience = body.get("toparty").is_some() || body.get("totag").is_some();
                let reached = userids.iter().filter(|u| !invalid.contains(u)).count();
                let mut why = vec![];
                if !unknown.is_empty() {
                    why.push(format!(
                        "WeCom has nobody the app may see for {} (users_by = {})",
                        unknown.join(", "),
                        live.directory.by()
                    ));
                }
                if !invalid.is_empty() {
                    why.push(format!(
                        "WeCom did not take {} (invaliduser: not in the app's visible range or no \
                         such userid; unlicenseduser: no 接口许可)",
                        invalid.join(", ")
                    ));
                }
                if why.is_empty() {
                    return Outcome::Sent(result);
                }
                invalid.extend(unknown);
                result["invalid"] = json!(invalid);
                let why = why.join("; ");
                if reached == 0 && !audience && userids.first().is_none_or(|u| u != "@all") {
                    Outcome::Undelivered {
                        result,
                        reason: why,
                    }
                } else {
                    result["note"] = json!(why);
                    Outcome::Sent(result)
                }
            }
            Err(Failure::Permanent(m)) if m.contains("errcode 81013") => Outcome::Undelivered {
                result: json!({}),
                reason: format!("{m} (nobody it names is in the app's visible range)"),
            },
            Err(f) => Outcome::Failed(f),
        }
    }

    /// The sent cards of `event` (a to-do), or what to do while they are not all settled.
    async fn cards(&self, event: &str) -> Result<Vec<Delivery>, Outcome> {
        let all = self
            .history
            .deliveries_of(event)
            .await
            .map_err(|e| Outcome::Failed(Failure::Transient(e.to_string())))?;
        let cards: Vec<Delivery> = all
            .into_iter()
            .filter(|c| c.connector == CONNECTOR && c.action == Action::Send)
            .collect();
        if let Some(c) = cards.iter().find(|c| !c.status.is_final()) {
            return Err(Outcome::Wait(format!(
                "message {} is {}; it can change once it is sent",
                c.sk,
                c.status.as_str()
            )));
        }
        Ok(cards
            .into_iter()
            .filter(|c| c.was_sent() && c.status == Status::Sent)
            .collect())
    }

    /// Turns a finished to-do's cards: the button reads `replace_name` (已处理). A card whose
    /// `response_code` is past its 72 hours, or was used, or that WeCom will not change, gets
    /// a short text to the same people instead, so the state still reaches them.
    async fn update_cards(&self, live: &Live, d: &Delivery) -> Outcome {
        let update: CardUpdate = match serde_json::from_value(d.message.clone()) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(Failure::Permanent(format!("bad card update: {e}"))),
        };
        let cards = match self.cards(&update.event).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let cards: Vec<&Delivery> = cards
            .iter()
            .filter(|c| c.message["msgtype"] == "template_card")
            .collect();
        if cards.is_empty() {
            return Outcome::Skipped(format!("no WeCom card was sent for {}", update.event));
        }
        let (mut updated, mut told) = (vec![], vec![]);
        for card in cards {
            let result = card.result.clone().unwrap_or_default();
            let fresh = now_ms() - result["sent_at"].as_i64().unwrap_or(0) < CARD_WINDOW;
            if let (Some(code), true) = (result["response_code"].as_str(), fresh) {
                let userids = match result.get("userids") {
                    Some(looked_up) => looked_up.clone(),
                    None => json!(card.recipients),
                };
                let body = json!({
                    "userids": userids,
                    "agentid": self.agent_id,
                    "response_code": code,
                    "button": { "replace_name": update.replace_name },
                });
                match self.call(live, UPDATE_CARD_PATH, &body).await {
                    Ok(_) => {
                        updated.push(card.sk.clone());
                        continue;
                    }
                    Err(Failure::Permanent(m)) => {
                        warn!(card = %card.sk, reason = %m, "WeCom would not change the card; telling its readers instead");
                    }
                    Err(f) => return Outcome::Failed(f),
                }
            }
            let title = card.message["template_card"]["main_title"]["title"]
                .as_str()
                .unwrap_or_default();
            let text = json!({
                "touser": card.recipients.join("|"),
                "agentid": self.agent_id,
                "msgtype": "text",
                "text": { "content": format!("【{}】{title}", update.replace_name) },
                "enable_duplicate_check": 1,
                "duplicate_check_interval": 14400,
            });
            if let Err(f) = self.message(live, &text).await {
                return Outcome::Failed(f);
            }
            told.push(card.sk.clone());
        }
        Outcome::Sent(json!({ "updated": updated, "told_by_text": told }))
    }
}

#[async_trait]
impl ConnectorPart for WeCom {
    type Config = WeComConfig;
    type RouteOptions = WeComRoute;
    /// Apps created since 2022-06-20 take calls only from their 企业可信IP.
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "A WeCom app",
        place: "管理后台 → 应用管理 → the app → 企业可信IP (required for apps created since 2022-06-20; \
            without it every call is refused with errcode 60020)",
    });

    fn check(config: &WeComConfig) -> Result<(), ConfigError> {
        if config.duplicate_check_secs > 14400 {
            return Err(ConfigError::Invalid(format!(
                "connectors.wecom.duplicate_check_secs = {} is more than WeCom's 14400",
                config.duplicate_check_secs
            )));
        }
        Ok(())
    }

    fn render(config: &WeComConfig) -> Arc<dyn Render> {
        Arc::new(Style {
            agent_id: config.agent_id,
            duplicate_check_secs: config.duplicate_check_secs,
        })
    }

    async fn build(
        config: &WeComConfig,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let live = match &config.secret {
            Some(s) => {
                let http =
                    crate::http::client(Duration::from_secs(config.timeout_secs)).map_err(|e| {
                        ConfigError::Invalid(format!("connectors.wecom: HTTP client: {e}"))
                    })?;
                Some(Live {
                    api: Api::new(http, &config.base_url, config.max_qps),
                    tokens: TokenCache::new(
                        format!("{CONNECTOR}#{}#{}", config.corp_id, config.agent_id),
                        ports.tokens.clone(),
                    ),
                    secret: secrets.resolve(s).await?,
                    people: RateWindow::per_minute(config.person_per_minute)
                        .and_per_hour(config.person_per_hour)
                        .per_recipient(),
                    directory: Directory::new(config.users_by),
                })
            }
            None => {
                warn!("WeCom has no secret: dry-run, requests are recorded, not sent");
                None
            }
        };
        Ok(Arc::new(WeCom {
            corp_id: config.corp_id.clone(),
            agent_id: config.agent_id,
            daily_limit: config.account_limit * PER_ACCOUNT_A_DAY,
            today: Mutex::default(),
            live,
            history: ports.history.clone(),
            usage: ports.usage.clone(),
            calls: CallCounter::new(
                ports.usage.clone(),
                format!("{CONNECTOR}#{}#{}", config.corp_id, config.agent_id),
            ),
        }))
    }
}

#[async_trait]
impl Connector for WeCom {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// A token from WeCom proves the corp id, the secret and (for apps that need it) the
    /// 企业可信IP, without sending anything.
    async fn preflight(&self, _: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        use crate::preflight::Check;
        let part = format!("{CONNECTOR} app {}", self.agent_id);
        let check = match &self.live {
            None => Check::note(&part, "dry-run (no secret): nothing is sent"),
            Some(live) => match self.fetch(live).await {
                Ok(_) => Check::pass(&part, "gettoken answered: the corp id and secret work"),
                Err(f) => Check::fail(&part, f.to_string()),
            },
        };
        vec![check]
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
            other => super::no_call("WeCom", other),
        }
    }

    /// Takes back one sent message, within WeCom's 24 hours.
    async fn recall(&self, d: &Delivery, now: Millis) -> Result<Value, Failure> {
        let result = d.result.clone().unwrap_or_default();
        let msgid = result["msgid"]
            .as_str()
            .filter(|_| d.was_sent() && d.status == Status::Sent)
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "delivery {} is not a sent WeCom message (it has no msgid)",
                    d.key()
                ))
            })?;
        let age = now - result["sent_at"].as_i64().unwrap_or(d.updated_at);
        if age >= RECALL_WINDOW {
            return Err(Failure::Permanent(format!(
                "sent {} h ago: WeCom recalls messages within 24 h only",
                age / 3_600_000
            )));
        }
        let body = json!({ "msgid": msgid });
        let Some(live) = &self.live else {
            return Ok(json!({ "requests": [{ "path": RECALL_PATH, "body": body }] }));
        };
        self.call(live, RECALL_PATH, &body).await?;
        Ok(json!({ "recalled_msgid": msgid }))
    }
}
