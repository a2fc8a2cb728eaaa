//! A fake AWS Lambda Invoke API on 127.0.0.1 (`POST /2015-03-31/functions/{name}/invocations`)
//! whose functions are sender apps answering through the real handler
//! ([`hookbridge::lambda::sender`]), as the stack's sender functions do, or held for a test to
//! run itself ([`FakeLambda::holding`]). An asynchronous invocation (`X-Amz-Invocation-Type:
//! Event`) is answered 202 with no body, as Lambda answers it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hookbridge::app::App;
use hookbridge::lambda::{SenderEvent, sender};
use lambda_runtime::{Context, LambdaEvent};

#[derive(Default)]
struct Inner {
    functions: HashMap<String, Arc<App>>,
    held: Mutex<HashMap<String, Vec<Bytes>>>,
    invoked: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct FakeLambda {
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeLambda {
    /// Serves these functions, by name.
    pub async fn start(functions: Vec<(String, Arc<App>)>) -> FakeLambda {
        Self::serve(Inner {
            functions: functions.into_iter().collect(),
            ..Inner::default()
        })
        .await
    }

    /// Takes the invocations of the functions `names` and keeps their payloads for
    /// [`FakeLambda::take`] (a bench runs them through a function's own binary).
    pub async fn holding(names: &[&str]) -> FakeLambda {
        Self::serve(Inner {
            held: Mutex::new(names.iter().map(|n| (n.to_string(), vec![])).collect()),
            ..Inner::default()
        })
        .await
    }

    async fn serve(inner: Inner) -> FakeLambda {
        let inner = Arc::new(inner);
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLambda { url, inner }
    }

    /// The functions invoked, in order.
    pub fn invoked(&self) -> Vec<String> {
        self.inner.invoked.lock().unwrap().clone()
    }

    /// The payloads `name` was invoked with since last taken.
    pub fn take(&self, name: &str) -> Vec<serde_json::Value> {
        let mut held = self.inner.held.lock().unwrap();
        let payloads = held.get_mut(name).map(std::mem::take).unwrap_or_default();
        payloads
            .iter()
            .map(|p| serde_json::from_slice(p).expect("a JSON payload"))
            .collect()
    }
}

async fn invoke(
    State(s): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.invoked.lock().unwrap().push(name.clone());
    let asynchronous = headers
        .get("x-amz-invocation-type")
        .is_some_and(|v| v == "Event");
    if let Some(held) = s.held.lock().unwrap().get_mut(&name) {
        held.push(body);
        return StatusCode::ACCEPTED.into_response();
    }
    let answer = run(&s, &name, body).await;
    if asynchronous {
        // Lambda accepts an event before running it: what the function says is in its log.
        return StatusCode::ACCEPTED.into_response();
    }
    answer
}

async fn run(s: &Inner, name: &str, body: Bytes) -> Response {
    let Some(app) = s.functions.get(name) else {
        let body = format!(r#"{{"Type":"User","message":"Function not found: {name}"}}"#);
        return (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            body,
        )
            .into_response();
    };
    let event: SenderEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            let error = format!(r#"{{"errorType":"Runtime.UnmarshalError","errorMessage":"{e}"}}"#);
            return (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                error,
            )
                .into_response();
        }
    };
    match sender(app, LambdaEvent::new(event, Context::default())).await {
        Ok(answer) => (StatusCode::OK, serde_json::to_string(&answer).unwrap()).into_response(),
        Err(e) => {
            let error = serde_json::json!({"errorType": "Error", "errorMessage": e.to_string()});
            (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                error.to_string(),
            )
                .into_response()
        }
    }
}

/// The sweeper's hand-off of DingTalk's follow-ups to `function` on the fake Lambda at `url`, as
/// the stack's variables name it.
pub fn sweeper_invoke(url: &str, function: &str) -> hookbridge::lambda::SweeperInvoke {
    let (url, functions) = (url.to_owned(), format!("dingtalk={function}"));
    hookbridge::lambda::SweeperInvoke::from_env(move |name| match name {
        hookbridge::lambda::FOLLOW_UP_FUNCTIONS_VAR => Some(functions.clone()),
        "AWS_ENDPOINT_URL_LAMBDA" => Some(url.clone()),
        "AWS_REGION" => Some("cn-north-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("x".into()),
        _ => None,
    })
    .expect("a function named")
}
