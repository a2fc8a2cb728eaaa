//! A fake AWS Lambda Invoke API on 127.0.0.1 (`POST /2015-03-31/functions/{name}/invocations`)
//! whose functions are sender apps answering through the real handler
//! ([`hookbridge::lambda::sender`]), as the stack's sender functions do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hookbridge::app::App;
use hookbridge::lambda::{SenderEvent, sender};
use lambda_runtime::{Context, LambdaEvent};

struct Inner {
    functions: HashMap<String, Arc<App>>,
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
        let inner = Arc::new(Inner {
            functions: functions.into_iter().collect(),
            invoked: Mutex::default(),
        });
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
}

async fn invoke(State(s): State<Arc<Inner>>, Path(name): Path<String>, body: Bytes) -> Response {
    s.invoked.lock().unwrap().push(name.clone());
    let Some(app) = s.functions.get(&name) else {
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
