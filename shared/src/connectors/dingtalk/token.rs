//! DingTalk's access token: fetched by `gettoken` with the app's key and secret, kept by the
//! fleet-wide cache every connector with tokens uses (`connectors/token.rs`).

use std::sync::Arc;

use serde_json::Value;
use tracing::{info, instrument};

use super::api::{Api, ApiError, TOKEN_PATH, as_code};
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
        let v = api
            .call(TOKEN_PATH, &query, None)
            .await
            .map_err(|e| match e {
                ApiError::Failed(f) => f,
                ApiError::TokenExpired(m) => Failure::Permanent(m),
            })?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Transient("DingTalk gettoken: no access_token in the answer".into())
            })?;
        let expires_in = v.get("expires_in").and_then(as_code);
        info!(expires_in, "fetched a DingTalk access token");
        Ok(token::record(token.to_owned(), expires_in))
    }
}
