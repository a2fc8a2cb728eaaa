//! ZenTao (禅道) / Xuanxuan (喧喧) third-party notifications: `im/sendNotification` to users and
//! `im/sendChatMessage` to a group, signed with `token = md5(md5(query) + key)` over exactly the
//! query string sent (ZenTao's 第三方应用 integration).
//!
//! `api.rs` has the signing and the error classes, `render.rs` the bodies; this file is the
//! connector the sender loop calls.

mod api;
mod preflight;
mod render;
#[cfg(feature = "cli")]
mod tools;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

pub use api::{Method, User, build_query, judge, php_urlencode, time_token, token};
pub use render::*;

use super::{CallCounter, Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Action, Delivery, Failure, Outcome};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::{RateStore, UsageStore};
use api::Client;

pub const CONNECTOR: &str = "zentao";

// ---- config: [connectors.zentao.<name>] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenTaoInstance {
    /// e.g. `https://zentao.example.com` (the directory holding the entry script).
    pub base_url: String,
    /// `x.php` (Xuanxuan ≥ 2.5.5, ZenTao 12+) or `api.php`.
    #[serde(default = "default_entry")]
    pub entry: String,
    /// The app's 代号.
    pub code: String,
    /// The app's 密钥; absent: dry-run.
    pub key: Option<SecretRef>,
    #[serde(default)]
    pub sender: ZenTaoSender,
    /// Whether recipients are ZenTao `account`s or numeric `id`s (never mixed in one call).
    #[serde(default)]
    pub users_by: UsersBy,
    /// `classic`: `md5(md5(query) + key)`; `time`: `md5(code + key + time)`, one call a second per app
    /// (every sender takes its second from one mark in the store).
    #[serde(default)]
    pub token_mode: TokenMode,
    /// `plain` text, or `markdown` (ZenTao's contentType `text`; the event's values are escaped).
    #[serde(default)]
    pub content: ContentFormat,
    /// Seconds each call to ZenTao may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A ZenTao login allowed to browse the company's users (the company-browse privilege),
    /// read-only: ZenTao's `im` API lists no accounts, its REST API does. With it
    /// `hookbridge zentao users` prints accounts and `hookbridge check --online` checks the
    /// mapped ones. Optional.
    pub directory: Option<ZenTaoLogin>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenTaoLogin {
    /// The ZenTao account (登录名) of a read-only user with the company-browse privilege.
    pub account: String,
    pub password: SecretRef,
}

/// An instance's secrets, resolved: its key (`None`: dry-run), and the directory login's
/// password.
#[derive(Default)]
pub struct Resolved {
    pub key: Option<String>,
    pub directory_password: Option<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentFormat {
    #[default]
    Plain,
    Markdown,
}

fn default_entry() -> String {
    "x.php".into()
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZenTaoSender {
    /// The sender's id as ZenTao shows it.
    pub id: String,
    /// The name shown as the sender.
    pub name: String,
    /// Its avatar image URL (empty: ZenTao's default).
    pub avatar: String,
}

impl Default for ZenTaoSender {
    fn default() -> Self {
        ZenTaoSender {
            id: "hookbridge".into(),
            name: "hookbridge".into(),
            avatar: String::new(),
        }
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsersBy {
    #[default]
    Account,
    Id,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenMode {
    /// `md5(md5(query) + key)` (T1).
    #[default]
    Classic,
    /// `md5(code + key + time)` (T2): ZenTao takes one call a second per entry, each with a
    /// later time than the last, so every call takes its second from a mark kept in the store
    /// for the whole fleet.
    Time,
}

/// Why a ZenTao lookup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ZenTaoError {
    #[error("no ZenTao instance {0} is configured")]
    NoInstance(String),
    #[error("ZenTao instance {0} has no key (dry-run)")]
    NoKey(String),
    #[error(transparent)]
    Call(#[from] Failure),
}

/// The ZenTao connector: one or more instances by name; an instance without a key is dry-run.
pub struct ZenTao {
    clients: BTreeMap<String, Option<Client>>,
    /// (instance, gid) of group chats found to exist with members, this process.
    checked_groups: Mutex<HashSet<(String, String)>>,
}

impl ZenTao {
    /// `instances`: name → (settings, its secrets); `marks`: where time tokens take their
    /// seconds (the store, for a fleet).
    /// The instances' clients; with `usage`, each counts its calls as `zentao#<instance>`.
    pub fn new(
        instances: Vec<(String, ZenTaoInstance, Resolved)>,
        marks: Arc<dyn RateStore>,
        usage: Option<Arc<dyn UsageStore>>,
    ) -> Result<Self, reqwest::Error> {
        let mut clients = BTreeMap::new();
        for (name, instance, resolved) in instances {
            let client = match resolved.key {
                Some(key) => {
                    let client =
                        Client::new(instance, key, resolved.directory_password, marks.clone())?;
                    Some(match &usage {
                        Some(u) => client
                            .counted(CallCounter::new(u.clone(), format!("{CONNECTOR}#{name}"))),
                        None => client,
                    })
                }
                None => None,
            };
            clients.insert(name, client);
        }
        Ok(ZenTao {
            clients,
            checked_groups: Mutex::default(),
        })
    }

    /// Makes sure `gid` is a group chat of `instance` that has members. ZenTao sends a chat
    /// message to the members of the gid it is given, and when that list is empty (no such
    /// group, a dismissed one, or one whose members all left) to every active user, answering
    /// success: an unchecked typo in a route would notify the whole organisation. A group found
    /// good is not asked about again by this process.
    async fn check_group(&self, instance: &str, client: &Client, gid: &str) -> Result<(), Failure> {
        let key = (instance.to_owned(), gid.to_owned());
        if self.checked().contains(&key) {
            return Ok(());
        }
        lookup_group(instance, client, gid).await?;
        self.checked().insert(key);
        Ok(())
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.checked_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The name and member count of group chat `gid`, or why it must not be sent to.
async fn lookup_group(
    instance: &str,
    client: &Client,
    gid: &str,
) -> Result<(String, usize), Failure> {
    let groups = string_map(&client.call(Method::GetGroupChats, &[], None).await?["data"]);
    let Some(name) = groups.get(gid) else {
        return Err(Failure::Permanent(format!(
            "ZenTao {instance} has no group chat {gid} (or it was dismissed): ZenTao would \
             send this to every active user, so it was not sent. Fix the route's group \
             (hookbridge zentao chats lists them)"
        )));
    };
    let members = client
        .call(Method::GetChatUsers, &[("gid", gid)], None)
        .await?;
    let members = string_map(&members["data"]).len();
    if members == 0 {
        return Err(Failure::Permanent(format!(
            "ZenTao group chat {gid} ({name}) on {instance} has no members: ZenTao would send \
             this to every active user, so it was not sent. Add members, or route elsewhere"
        )));
    }
    Ok((name.clone(), members))
}

impl ZenTao {
    /// Instances without a key: requests are recorded, not sent.
    fn dry_run_instances(&self) -> Vec<&str> {
        self.clients
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn client(&self, instance: &str) -> Result<&Client, ZenTaoError> {
        match self.clients.get(instance) {
            Some(Some(c)) => Ok(c),
            Some(None) => Err(ZenTaoError::NoKey(instance.to_owned())),
            None => Err(ZenTaoError::NoInstance(instance.to_owned())),
        }
    }

    /// Group chats of an instance: gid → name (for writing routes).
    pub async fn group_chats(
        &self,
        instance: &str,
    ) -> Result<BTreeMap<String, String>, ZenTaoError> {
        let v = self
            .client(instance)?
            .call(Method::GetGroupChats, &[], None)
            .await?;
        Ok(string_map(&v["data"]))
    }

    /// Every user of an instance with account, id and real name, through its `directory`
    /// login (`None` when it has none).
    pub async fn directory(&self, instance: &str) -> Result<Option<Vec<User>>, ZenTaoError> {
        Ok(self.client(instance)?.directory().await?)
    }

    /// Users of an instance, or of one group: id → display name.
    pub async fn users(
        &self,
        instance: &str,
        gid: Option<&str>,
    ) -> Result<BTreeMap<String, String>, ZenTaoError> {
        let extra: Vec<(&str, &str)> = gid.map(|g| ("gid", g)).into_iter().collect();
        let v = self
            .client(instance)?
            .call(Method::GetChatUsers, &extra, None)
            .await?;
        Ok(string_map(&v["data"]))
    }
}

/// The secrets of one instance.
pub async fn resolve(z: &ZenTaoInstance, secrets: &Secrets) -> Result<Resolved, ConfigError> {
    Ok(Resolved {
        key: match &z.key {
            Some(k) => Some(secrets.resolve(k).await?),
            None => None,
        },
        directory_password: match &z.directory {
            Some(login) => Some(secrets.resolve(&login.password).await?),
            None => None,
        },
    })
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl ConnectorPart for ZenTao {
    /// Instances by name: `[connectors.zentao.<name>]`.
    type Config = BTreeMap<String, ZenTaoInstance>;
    type RouteOptions = super::NoRouteOptions;
    /// The ZenTao app's IP list (errcode 403 IP_DENIED).
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "ZenTao",
        place: "ZenTao: 后台 → 二次开发 → 应用 → the app → IP. Without it every call is refused (errcode 403 \
            IP_DENIED); or leave the app's IP list unlimited",
    });

    fn check(instances: &Self::Config) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if instances.is_empty() {
            return invalid(
                "connectors.zentao: add an instance, [connectors.zentao.<name>]".into(),
            );
        }
        for (name, z) in instances {
            if !matches!(z.entry.trim_start_matches('/'), "x.php" | "api.php") {
                return invalid(format!(
                    "connectors.zentao.{name}.entry must be x.php or api.php"
                ));
            }
            if z.code.is_empty()
                || !z
                    .code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return invalid(format!(
                    "connectors.zentao.{name}.code must be the app's 代号 (letters, digits, _)"
                ));
            }
        }
        Ok(())
    }

    fn render(instances: &Self::Config) -> Arc<dyn Render> {
        Arc::new(ZenTaoRender {
            instances: instances.clone(),
        })
    }

    async fn build(
        instances: &Self::Config,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let mut resolved = vec![];
        for (name, z) in instances {
            resolved.push((name.clone(), z.clone(), resolve(z, secrets).await?));
        }
        let zentao = ZenTao::new(resolved, ports.rates.clone(), Some(ports.usage.clone()))
            .map_err(|e| ConfigError::Invalid(format!("connectors.zentao: HTTP client: {e}")))?;
        let dry = zentao.dry_run_instances();
        if !dry.is_empty() {
            warn!(instances = ?dry, "ZenTao instances without a key: dry-run");
        }
        Ok(Arc::new(zentao))
    }

    #[cfg(feature = "cli")]
    fn tool() -> Option<crate::tools::Tool> {
        Some(tools::tool())
    }
}

#[async_trait]
impl Connector for ZenTao {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    async fn preflight(&self, scope: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        self.preflight_checks(scope).await
    }

    fn dry_run(&self) -> bool {
        self.clients.values().any(Option::is_none)
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        if d.action != Action::Send {
            return Outcome::Skipped(
                "ZenTao has no API to update a notification it already showed".into(),
            );
        }
        let message: ZenTaoMessage = match serde_json::from_value(d.message.clone()) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad ZenTao delivery: {e}")));
            }
        };
        let method = message.method();
        let body = match serde_json::to_value(&message.notice) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad ZenTao delivery: {e}")));
            }
        };
        match self.clients.get(&message.instance) {
            None => Outcome::Failed(Failure::Permanent(format!(
                "no ZenTao instance {} is configured",
                message.instance
            ))),
            Some(None) => Outcome::DryRun(json!({
                "requests": [{ "path": format!("?m=im&f={}", method.name()), "body": body }]
            })),
            Some(Some(client)) => {
                if let Some(gid) = &message.notice.gid
                    && let Err(f) = self.check_group(&message.instance, client, gid).await
                {
                    return Outcome::Failed(f);
                }
                match client.call(method, &[], Some(&body)).await {
                    Ok(_) => {
                        info!(instance = %message.instance, method = method.name(), "ZenTao accepted the message");
                        Outcome::Sent(
                            json!({ "instance": message.instance, "method": method.name() }),
                        )
                    }
                    Err(f) => Outcome::Failed(f),
                }
            }
        }
    }
}
