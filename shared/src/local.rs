//! `hookbridge serve`: the whole pipeline in one process. The same ingress handlers behind an
//! axum server, the in-memory store's change feed in place of the DynamoDB stream, and the
//! sweeper on a timer.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::error;

use crate::app::{App, Parts};
use crate::config::{Config, Secrets};
use crate::delivery::sweep;
use crate::event::now_ms;
use crate::ingress::Request;
use crate::store::memory::MemoryStore;

/// Larger than any source's own limit, so oversized bodies still get the source's 413.
const HTTP_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/deliveries", get(deliveries))
        .route("/healthz", get(|| async { "ok" }))
        .route("/{*path}", post(webhook))
        .layer(axum::extract::DefaultBodyLimit::max(HTTP_BODY_LIMIT))
        .with_state(app)
}

async fn webhook(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Request {
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let resp = app.ingress.handle(req, now_ms()).await;
    (
        resp.status,
        [(header::CONTENT_TYPE, "application/json")],
        resp.body,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn deliveries(State(app): State<Arc<App>>, Query(q): Query<Limit>) -> Response {
    match app.store.recent(q.limit.unwrap_or(100)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// A running local pipeline (also what the end-to-end tests start).
pub struct Local {
    pub app: Arc<App>,
    pub addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Local {
    /// Binds `config.server.listen` (port 0 picks a free one) and starts the server, the sender
    /// and the sweeper in the background.
    pub async fn start(config: Config) -> Result<Local, Box<dyn std::error::Error + Send + Sync>> {
        let (store, feed) = MemoryStore::with_feed();
        let sweep_every = Duration::from_secs(config.server.sweep_interval_secs.max(1));
        let listener = TcpListener::bind(&config.server.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let app =
            Arc::new(App::build(config, Arc::new(store), &Secrets::default(), Parts::All).await?);
        let sender = app.clone();
        let sweeper = app.clone();
        let server = router(app.clone());
        let tasks = vec![
            tokio::spawn(async move { sender.sender.run_feed(feed).await }),
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(sweep_every);
                loop {
                    tick.tick().await;
                    if let Err(e) = sweep(sweeper.store.as_ref(), now_ms(), 100).await {
                        error!(error = %e, "sweep failed");
                    }
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, server).await {
                    error!(error = %e, "server stopped");
                }
            }),
        ];
        Ok(Local { app, addr, tasks })
    }

    pub fn webhook_urls(&self) -> Vec<String> {
        self.app
            .ingress
            .paths()
            .iter()
            .map(|p| format!("http://{}{p}", self.addr))
            .collect()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
