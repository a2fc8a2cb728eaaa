//! One access token per DingTalk app, shared by the whole fleet through the store and cached
//! per process. Refresh is single-flight in a process (the mutex) and across processes (the
//! store's conditional lease), so concurrent cold starts call `gettoken` once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{info, instrument};

use super::api::{Api, ApiError, TOKEN_PATH, as_code};
use crate::event::{Failure, Millis, now_ms};
use crate::store::{TokenRecord, TokenStore};

/// One access token per app, shared by the fleet through the store and cached per process.
/// Refresh is single-flight in a process (the mutex) and across processes (the store lease).
pub struct TokenCache {
    name: String,
    app_key: String,
    app_secret: String,
    store: Arc<dyn TokenStore>,
    memory: Mutex<Option<TokenRecord>>,
    owner: String,
}

const LEASE_MS: Millis = 10_000;
const LEASE_POLL: Duration = Duration::from_millis(100);

impl TokenCache {
    pub fn new(app_key: String, app_secret: String, store: Arc<dyn TokenStore>) -> Self {
        TokenCache {
            name: format!("dingtalk#{app_key}"),
            app_key,
            app_secret,
            store,
            memory: Mutex::new(None),
            owner: format!("{:016x}", fastrand::u64(..)),
        }
    }

    pub(super) async fn get(&self, api: &Api) -> Result<String, Failure> {
        let mut memory = self.memory.lock().await;
        if let Some(t) = memory.as_ref()
            && now_ms() < t.refresh_at
        {
            return Ok(t.access_token.clone());
        }
        let store_err =
            |e: crate::store::StoreError| Failure::Transient(format!("token cache: {e}"));
        let deadline = now_ms() + LEASE_MS;
        while now_ms() < deadline {
            let shared = self.store.token(&self.name).await.map_err(store_err)?;
            if let Some(t) = &shared
                && now_ms() < t.refresh_at
            {
                *memory = shared.clone();
                return Ok(t.access_token.clone());
            }
            if self
                .store
                .lease(&self.name, &self.owner, now_ms(), now_ms() + LEASE_MS)
                .await
                .map_err(store_err)?
            {
                let fresh = match self.fetch(api).await {
                    Ok(fresh) => fresh,
                    Err(failed) => {
                        // Nobody waits out the lease for a token that did not come (a wrong
                        // secret, an address DingTalk does not list).
                        let _ = self.store.release(&self.name, &self.owner).await;
                        return Err(failed);
                    }
                };
                self.store
                    .save_token(&self.name, &fresh)
                    .await
                    .map_err(store_err)?;
                *memory = Some(fresh.clone());
                return Ok(fresh.access_token);
            }
            // Another process is refreshing; a token that has not expired yet still works.
            if let Some(t) = shared
                && now_ms() < t.expires_at
            {
                return Ok(t.access_token);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        // The lease holder went quiet for a whole lease: fetch without it.
        let fresh = self.fetch(api).await?;
        self.store
            .save_token(&self.name, &fresh)
            .await
            .map_err(store_err)?;
        *memory = Some(fresh.clone());
        Ok(fresh.access_token)
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
        // Missing or non-positive lifetimes fall back to 7200 s, so a bad answer cannot cause a
        // refresh loop; refresh 5 minutes early but never sooner than a minute.
        let expires_in = v
            .get("expires_in")
            .and_then(as_code)
            .filter(|s| *s > 0)
            .unwrap_or(7200);
        let now = now_ms();
        info!(expires_in, "fetched a DingTalk access token");
        Ok(TokenRecord {
            access_token: token.to_owned(),
            refresh_at: now + (expires_in - 300).max(60).min(expires_in) * 1000,
            expires_at: now + expires_in * 1000,
        })
    }

    pub(super) async fn invalidate(&self, token: &str) -> Result<(), Failure> {
        let mut memory = self.memory.lock().await;
        if memory.as_ref().is_some_and(|t| t.access_token == token) {
            *memory = None;
        }
        self.store
            .drop_token(&self.name, token)
            .await
            .map_err(|e| Failure::Transient(format!("token cache: {e}")))
    }
}
