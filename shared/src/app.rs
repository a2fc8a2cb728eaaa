//! Wiring: a config and a store become the ingress pipeline and the sender loop. Lambda
//! functions, `hookbridge serve` and the tests all build through here, so they run the same
//! components with the same settings.

use std::sync::Arc;

use tracing::warn;

use crate::config::{Config, ConfigError, Secrets};
use crate::connectors::dingtalk::DingTalk;
use crate::delivery::{Connector, Sender};
use crate::ingress::{Ingress, Source};
use crate::routing::Router;
use crate::sources::hap::HapSource;
use crate::store::Store;

pub struct App {
    pub ingress: Ingress,
    pub sender: Sender,
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
    ) -> Result<App, ConfigError> {
        let invalid = ConfigError::Invalid;
        let mut sources: Vec<Arc<dyn Source>> = vec![];
        if let Some(hap) = &config.sources.hap {
            let mut tokens = vec![];
            for t in &hap.tokens {
                tokens.push(secrets.resolve(t).await?);
            }
            sources.push(Arc::new(
                HapSource::new(&hap.header, tokens, hap.max_body_bytes).map_err(invalid)?,
            ));
        }
        let mut connectors: Vec<Arc<dyn Connector>> = vec![];
        let mut dry_run = vec![];
        if let Some(dt) = &config.connectors.dingtalk {
            let secret = match &dt.app_secret {
                Some(s) => Some(secrets.resolve(s).await?),
                None => None,
            };
            let connector = DingTalk::new(dt, secret, store.clone()).map_err(invalid)?;
            if connector.is_dry_run() {
                warn!(
                    "DingTalk has no app_key/app_secret: dry-run, requests are recorded, not sent"
                );
                dry_run.push(crate::connectors::dingtalk::CONNECTOR);
            }
            connectors.push(Arc::new(connector));
        }
        Ok(App {
            ingress: Ingress::new(sources, Router::new(&config), store.clone()),
            sender: Sender::new(connectors, store.clone(), config.delivery),
            store,
            config,
            dry_run,
        })
    }
}
