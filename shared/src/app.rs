//! Wiring: a config and a store become the ingress pipeline and the sender loop. Lambda
//! functions, `hookbridge serve` and the tests all build through here, so they run the same
//! components with the same settings.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{Config, ConfigError, Secrets};
use crate::connectors::Ports;
use crate::delivery::Sender;
use crate::ingress::Ingress;
use crate::preflight::{Check, Scope};
use crate::routing::Router;
use crate::store::Store;
use crate::templates::Templates;

/// Which halves of the pipeline to build. Each Lambda builds only its own half, so it only
/// resolves (and only has IAM access to) the secrets that half needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// One source: a webhook function (its own secrets, no connector's, no other source's).
    Source(&'static str),
    /// One connector: a sender function (its own secrets, no source's, no other connector's).
    Connector(&'static str),
    /// Both: `hookbridge serve` and tests.
    All,
}

impl Parts {
    fn has_source(self, name: &str) -> bool {
        matches!(self, Parts::All) || matches!(self, Parts::Source(s) if s == name)
    }

    fn has_connector(self, name: &str) -> bool {
        matches!(self, Parts::All) || matches!(self, Parts::Connector(c) if c == name)
    }
}

pub struct App {
    pub ingress: Ingress,
    pub sender: Arc<Sender>,
    pub store: Arc<dyn Store>,
    pub config: Config,
    /// Connectors with no credentials, which record requests instead of sending them.
    pub dry_run: Vec<&'static str>,
}

impl App {
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        secrets: &Secrets,
        parts: Parts,
    ) -> Result<App, ConfigError> {
        let sources = config
            .sources
            .build(secrets, |name| parts.has_source(name))
            .await?;
        let ports = Ports {
            tokens: store.clone(),
            history: store.clone(),
            receipts: store.clone(),
            cache: store.clone(),
            usage: store.clone(),
            rates: store.clone(),
        };
        let connectors = config
            .connectors
            .build(secrets, &ports, |name| parts.has_connector(name))
            .await?;
        let dry_run = connectors
            .iter()
            .filter(|c| c.dry_run())
            .map(|c| c.name())
            .collect();
        let templates = Templates::new(&crate::registry::builtins(), &config.templates)?;
        let router = Router::new(
            &config.routes,
            config.recipients.clone(),
            &config.connectors.renderers(),
            templates,
        )?;
        Ok(App {
            ingress: Ingress::new(sources, router, store.clone()),
            sender: Arc::new(Sender::new(connectors, store.clone(), config.delivery)),
            store,
            config,
            dry_run,
        })
    }

    /// Asks every configured connector this app sends through, read-only, whether what the
    /// config names works there (`hookbridge check --online`); a sender function answers for
    /// its own connector only.
    pub async fn preflight(&self, send_test: bool, max_users: usize) -> Vec<Check> {
        let mut out = vec![];
        for name in self.config.connectors.configured() {
            if let Some(c) = self.sender.connector(name) {
                let scope = scope(&self.config, name, send_test, max_users);
                out.extend(c.preflight(&scope).await);
            }
        }
        crate::connectors::flush_calls().await;
        out
    }
}

/// What the config asks `connector` to reach: the ids it names for it, its routes' groups.
fn scope(config: &Config, connector: &str, send_test: bool, max_users: usize) -> Scope {
    let mut users: BTreeSet<String> = config
        .recipients
        .get(connector)
        .map(|m| m.map.values().cloned().collect())
        .unwrap_or_default();
    let mut groups = BTreeSet::new();
    for route in config.routes.iter().filter(|r| r.connector == connector) {
        users.extend(route.users.iter().flatten().cloned());
        if let Some(group) = &route.group {
            groups.insert((route.instance.clone(), group.clone()));
        }
    }
    Scope {
        users,
        groups,
        send_test,
        max_users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn the_scope_is_what_the_config_names_for_the_connector() {
        let config = Config::from_toml(
            r#"
            [sources.hap]
            tokens = ["plain:t"]
            [sources.dms]
            [connectors.dingtalk]
            agent_id = 1
            [connectors.zentao.main]
            base_url = "https://z.example.com"
            code = "c"
            [[routes]]
            source = "hap"
            connector = "zentao"
            group = "g1"
            [[routes]]
            source = "dms"
            connector = "zentao"
            users = ["wangwu"]
            [recipients.zentao.map]
            a = "zhangsan"
            b = "lisi"
            [recipients.dingtalk.map]
            a = "ding-user"
            "#,
        )
        .unwrap();
        let scope = scope(&config, "zentao", false, 2);
        assert_eq!(
            scope.users.iter().collect::<Vec<_>>(),
            ["lisi", "wangwu", "zhangsan"]
        );
        assert_eq!(
            scope.groups.iter().collect::<Vec<_>>(),
            [&(None, "g1".to_owned())]
        );
        assert_eq!(scope.users_to_check(), (vec!["lisi", "wangwu"], 1));
    }

    async fn build(
        hap_token: &str,
        dingtalk_secret: &str,
        parts: Parts,
    ) -> Result<App, ConfigError> {
        let text = format!(
            r#"
            [sources.hap]
            tokens = ["{hap_token}"]
            [connectors.dingtalk]
            agent_id = 1
            app_key = "k"
            app_secret = "{dingtalk_secret}"
            [[routes]]
            source = "hap"
            connector = "dingtalk"
            "#
        );
        let config = Config::from_toml(&text).unwrap();
        App::build(
            config,
            Arc::new(MemoryStore::new()),
            &Secrets::default(),
            parts,
        )
        .await
    }

    const UNSET: &str = "env:HOOKBRIDGE_TEST_UNSET";

    #[tokio::test]
    async fn each_part_resolves_only_its_own_secrets() {
        let ingress = build("plain:t", UNSET, Parts::Source("hap")).await.unwrap();
        assert!(ingress.dry_run.is_empty() && !ingress.ingress.paths().is_empty());
        assert!(build(UNSET, "plain:s", Parts::Source("hap")).await.is_err());
        let other = build(UNSET, "plain:s", Parts::Source("dms")).await.unwrap();
        assert!(
            other.ingress.paths().is_empty(),
            "no DMS configured, and HAP's token is not read"
        );
        let delivery = build(UNSET, "plain:s", Parts::Connector("dingtalk"))
            .await
            .unwrap();
        assert!(delivery.ingress.paths().is_empty());
        assert!(
            build("plain:t", UNSET, Parts::Connector("dingtalk"))
                .await
                .is_err()
        );
        let err = build("plain:t", UNSET, Parts::All)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("HOOKBRIDGE_TEST_UNSET is not set"), "{err}");
    }
}
