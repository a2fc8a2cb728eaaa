//! A fake AWS Secrets Manager on 127.0.0.1 that answers `GetSecretValue` in the AWS JSON 1.1
//! protocol, so the real secret-resolution path runs without AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct FakeSecrets {
    pub url: String,
    /// The `SecretId`s asked for, in order.
    pub requested: Arc<Mutex<Vec<String>>>,
}

impl FakeSecrets {
    pub async fn start(secrets: &[(&str, &str)]) -> FakeSecrets {
        let values: HashMap<String, String> = secrets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let requested = Arc::new(Mutex::new(vec![]));
        let state = (Arc::new(values), requested.clone());
        let app = Router::new()
            .route("/", post(get_secret_value))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSecrets { url, requested }
    }
}

type Shared = (Arc<HashMap<String, String>>, Arc<Mutex<Vec<String>>>);

async fn get_secret_value(
    State((values, requested)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let json_type = [("content-type", "application/x-amz-json-1.1")];
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "secretsmanager.GetSecretValue" {
        let e = json!({"__type": "UnknownOperationException", "message": target});
        return (StatusCode::BAD_REQUEST, json_type, e.to_string());
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["SecretId"].as_str().map(str::to_owned))
        .unwrap_or_default();
    requested.lock().unwrap().push(id.clone());
    match values.get(&id) {
        Some(secret) => {
            let ok = json!({"ARN": id, "Name": "hookbridge", "SecretString": secret, "VersionId": "v1", "CreatedDate": 1.795e9});
            (StatusCode::OK, json_type, ok.to_string())
        }
        None => {
            let e = json!({"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."});
            (StatusCode::BAD_REQUEST, json_type, e.to_string())
        }
    }
}
