//! One access token per app of a connector's system (a DingTalk app, a WeCom app), shared by
//! the whole fleet through the store and cached per process. Refresh is single-flight in a
//! process (the mutex) and across processes (the store's conditional lease), so concurrent
//! cold starts fetch once. The connector says how a token is fetched.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tracing::warn;

use crate::event::{Failure, Millis, now_ms};
use crate::pacer::Pacer;
use crate::store::{TokenRecord, TokenStore};

/// Why a call with a token failed, as the sender needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The token is invalid or expired: fetch another and call once more, at once.
    TokenExpired(String),
    Failed(Failure),
}

/// How long calls to an API wait after its system says "too many" without saying for how long
/// (WeCom's minute windows).
pub const THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// One call to `system`'s `api`, paced: waits for the API's slot (or is throttled when that is
/// far off), sends `request`, reads the answer with `judge`, and tells the pacer how it went.
/// Errors never carry the URL (its query may hold a token or a secret).
pub async fn paced(
    pacer: &Pacer,
    system: &str,
    api: &'static str,
    request: reqwest::RequestBuilder,
    judge: impl FnOnce(u16, &reqwest::header::HeaderMap, &[u8]) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    if let Err(wait) = pacer.wait(api).await {
        return Err(ApiError::Failed(Failure::Throttled {
            reason: format!("{system} {api}: paced"),
            wait: Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX),
        }));
    }
    let failed =
        |e: reqwest::Error| ApiError::Failed(Failure::Transient(e.without_url().to_string()));
    let response = request.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(failed)?;
    let answer = judge(status, &headers, &bytes);
    match &answer {
        // The whole API waits as long as the system said (or THROTTLE_WAIT when it said not).
        Err(ApiError::Failed(Failure::Throttled { wait, .. })) => pacer.throttled(
            api,
            Duration::from_millis(u64::try_from(*wait).unwrap_or(0)),
        ),
        Ok(_) => pacer.succeeded(api),
        _ => {}
    }
    answer
}

pub struct TokenCache {
    /// The token's name in the store (`<connector>#<app>`).
    name: String,
    store: Arc<dyn TokenStore>,
    memory: Mutex<Option<TokenRecord>>,
    owner: String,
}

const LEASE_MS: Millis = 10_000;
const LEASE_POLL: Duration = Duration::from_millis(100);

/// What the store keeps of a token issued for `expires_in` seconds: refreshed 5 minutes early
/// but never sooner than a minute; a missing or non-positive lifetime counts as 7200 s, so a
/// bad answer cannot cause a refresh loop.
pub fn record(access_token: String, expires_in: Option<i64>) -> TokenRecord {
    let expires_in = expires_in.filter(|s| *s > 0).unwrap_or(7200);
    let now = now_ms();
    TokenRecord {
        access_token,
        refresh_at: now + (expires_in - 300).max(60).min(expires_in) * 1000,
        expires_at: now + expires_in * 1000,
    }
}

/// The token in a `gettoken` answer (`access_token`, `expires_in`), as DingTalk and WeCom give
/// it; `answer` is the call's outcome, whose expired-token reading means a refused secret here.
pub fn issued(
    system: &str,
    answer: Result<serde_json::Value, ApiError>,
) -> Result<TokenRecord, Failure> {
    let v = answer.map_err(|e| match e {
        ApiError::Failed(f) => f,
        ApiError::TokenExpired(m) => Failure::Permanent(m),
    })?;
    let token = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Failure::Transient(format!("{system} gettoken: no access_token in the answer"))
        })?;
    Ok(record(token.to_owned(), v["expires_in"].as_i64()))
}

impl TokenCache {
    pub fn new(name: String, store: Arc<dyn TokenStore>) -> Self {
        TokenCache {
            name,
            store,
            memory: Mutex::new(None),
            owner: format!("{:016x}", fastrand::u64(..)),
        }
    }

    /// A token that has not reached its refresh time: this process's, the fleet's, or one
    /// `fetch` gets (by this process alone across the fleet, while it holds the lease).
    pub async fn get<F, Fut>(&self, fetch: &F) -> Result<String, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<TokenRecord, Failure>>,
    {
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
                let fresh = match fetch().await {
                    Ok(fresh) => fresh,
                    Err(failed) => {
                        // Nobody waits out the lease for a token that did not come (a wrong
                        // secret, an address the system does not list).
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
        let fresh = fetch().await?;
        self.store
            .save_token(&self.name, &fresh)
            .await
            .map_err(store_err)?;
        *memory = Some(fresh.clone());
        Ok(fresh.access_token)
    }

    /// `call` with the fleet's token; when the system says the token is no good, forgets it,
    /// fetches another and calls once more.
    pub async fn call<T, F, FFut, C, CFut>(&self, fetch: F, call: C) -> Result<T, Failure>
    where
        F: Fn() -> FFut,
        FFut: Future<Output = Result<TokenRecord, Failure>>,
        C: Fn(String) -> CFut,
        CFut: Future<Output = Result<T, ApiError>>,
    {
        let token = self.get(&fetch).await?;
        match call(token.clone()).await {
            Err(ApiError::TokenExpired(m)) => {
                warn!(reason = %m, "access token rejected; refreshing once");
                self.invalidate(&token).await?;
                let token = self.get(&fetch).await?;
                call(token).await.map_err(|e| match e {
                    ApiError::TokenExpired(m) => {
                        Failure::Transient(format!("a freshly fetched token was rejected: {m}"))
                    }
                    ApiError::Failed(f) => f,
                })
            }
            Err(ApiError::Failed(f)) => Err(f),
            Ok(v) => Ok(v),
        }
    }

    /// Forgets `token` (the system said it expired), here and in the store.
    pub async fn invalidate(&self, token: &str) -> Result<(), Failure> {
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
