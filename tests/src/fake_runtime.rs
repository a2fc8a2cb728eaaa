//! A fake Lambda Runtime API on 127.0.0.1, to run a real function binary the way Lambda does:
//! `AWS_LAMBDA_RUNTIME_API=host:port` (no scheme), one invocation handed out on
//! `GET /2018-06-01/runtime/invocation/next`, its answer taken from `.../response` or
//! `.../error` (or `/runtime/init/error` when the function cannot start).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::mpsc;

#[derive(Debug, PartialEq)]
pub enum Answer {
    Response(Value),
    Error(Value),
    InitError(Value),
    /// The process ended without answering (Lambda reports `Runtime.ExitError`).
    Exited(Option<i32>),
}

struct Shared {
    payload: Mutex<Option<Value>>,
    answers: mpsc::UnboundedSender<Answer>,
}

async fn next(State(s): State<Arc<Shared>>) -> axum::response::Response {
    let payload = s.payload.lock().unwrap().take();
    match payload {
        Some(p) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-runtime-aws-request-id",
                "8476a536-e9f4-11e8-9739-2dfe598c3fcd".parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                (hookbridge::event::now_ms() + 30_000)
                    .to_string()
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws-cn:lambda:cn-north-1:123456789012:function:hookbridge"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
                    .parse()
                    .unwrap(),
            );
            (headers, p.to_string()).into_response()
        }
        // One invocation per test: later polls wait until the process is stopped.
        None => std::future::pending().await,
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Runs `binary` for one invocation with `payload` and returns what it answered (30 s at most)
/// and what it logged.
pub async fn invoke(binary: &str, env: &[(&str, String)], payload: Value) -> (Answer, String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        payload: Mutex::new(Some(payload)),
        answers: tx,
    });
    let send = |make: fn(Value) -> Answer| {
        move |State(s): State<Arc<Shared>>, body: Bytes| async move {
            let _ = s.answers.send(make(json(&body)));
            "{}"
        }
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(send(Answer::Response)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(send(Answer::Error)),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(send(Answer::InitError)),
        )
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "hookbridge")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/hookbridge")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]test")
        .env("AWS_REGION", "us-east-1")
        // Never reach for instance metadata: this machine talks to loopback only.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let answer = tokio::select! {
        a = rx.recv() => a.expect("the runtime API is up"),
        status = child.wait() => Answer::Exited(status.ok().and_then(|s| s.code())),
        _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("{binary}: no answer within 30 s"),
    };
    let _ = child.start_kill();
    // Logs: the runtime's tracing goes to stdout (as on Lambda), a failed `main` to stderr.
    let out = child.wait_with_output().await.expect("the process ends");
    server.abort();
    let logs = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    crate::assert_no_secret(&format!("{binary}'s log"), &logs);
    crate::assert_no_secret(&format!("{binary}'s answer"), &format!("{answer:?}"));
    (answer, logs.into_owned())
}
