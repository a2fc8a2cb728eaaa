//! DingTalk's access token: fetched by `gettoken` with the app's key and secret, kept by the
//! fleet-wide cache every connector with tokens uses (`connectors/token.rs`).

use std::sync::Arc;

use serde_json::Value;
use tracing::{info, instrument};

use super::api::{Api, TOKEN_PATH};
use crate::connectors::token::{self, TokenCache};
use crate::event::Failure;
use crate::store::{TokenRecord, TokenStore};

/// One access token per DingTalk app, shared by the fleet.
pub struct DingTalkTokens {
    cache: TokenCache,
    app_key: String,
    app_secret: String,
}

impl DingTalkTokens {
    pub fn new(app_key: String, app_secret: String, store: Arc<dyn TokenStore>) -> Self {
        DingTalkTokens {
            cache: TokenCache::new(format!("dingtalk#{app_key}"), store),
            app_key,
            app_secret,
        }
    }

    /// Calls `path` with the fleet's token, refreshed once if DingTalk calls it expired.
    pub(super) async fn call(
        &self,
        api: &Api,
        path: &'static str,
        body: &Value,
    ) -> Result<Value, Failure> {
        let call = |token: String| async move {
            api.call(path, &[("access_token", &token)], Some(body))
                .await
        };
        self.cache.call(|| self.fetch(api), call).await
    }

    /// A fresh token from DingTalk, whatever the store holds: stored tokens go on working from
    /// an address DingTalk no longer takes calls from, a new one does not.
    #[instrument(skip_all, fields(app_key = %self.app_key))]
    pub(super) async fn fetch(&self, api: &Api) -> Result<TokenRecord, Failure> {
        let query = [
            ("appkey", self.app_key.as_str()),
            ("appsecret", self.app_secret.as_str()),
        ];
        let token = token::issued("DingTalk", api.call(TOKEN_PATH, &query, None).await)?;
        info!(
            expires_in = (token.expires_at - crate::event::now_ms()) / 1000,
            "fetched a DingTalk access token"
        );
        Ok(token)
    }
}
