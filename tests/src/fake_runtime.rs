//! A fake Lambda Runtime API on 127.0.0.1, to run a real function binary the way Lambda does:
//! `AWS_LAMBDA_RUNTIME_API=host:port` (no scheme), one invocation handed out on
//! `GET /2018-06-01/runtime/invocation/next`, its answer taken from `.../response` or
//! `.../error` (or `/runtime/init/error` when the function cannot start).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::{Child, Command};
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
    payloads: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    /// When the process first asked for an invocation: its init is over.
    polled: Mutex<Option<Instant>>,
    answers: mpsc::UnboundedSender<Answer>,
}

async fn next(State(s): State<Arc<Shared>>) -> axum::response::Response {
    s.polled.lock().unwrap().get_or_insert_with(Instant::now);
    // Later polls wait here until the driver hands out the next invocation (or stops).
    let Some(p) = s.payloads.lock().await.recv().await else {
        return std::future::pending().await;
    };
    let mut headers = HeaderMap::new();
    let id = format!("8476a536-e9f4-11e8-9739-{:012x}", fastrand::u64(..1 << 48));
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
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

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// One function process under the emulated Runtime API, kept warm between invocations.
pub struct Session {
    binary: String,
    child: Child,
    started: Instant,
    shared: Arc<Shared>,
    payloads: mpsc::UnboundedSender<Value>,
    answers: mpsc::UnboundedReceiver<Answer>,
    server: tokio::task::JoinHandle<()>,
    /// stdout and stderr, read as they come: a full pipe would block the process.
    logs: [tokio::task::JoinHandle<Vec<u8>>; 2],
}

/// Reads a pipe to its end.
fn drain(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut out = vec![];
        if let Some(mut pipe) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut out).await;
        }
        out
    })
}

impl Session {
    /// Starts `binary` the way Lambda does, with `env` over the standard Lambda variables.
    pub async fn start(binary: &str, env: &[(&str, String)]) -> Session {
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (payloads, payloads_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            payloads: tokio::sync::Mutex::new(payloads_rx),
            polled: Mutex::new(None),
            answers: answers_tx,
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
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let started = Instant::now();
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
        let logs = [drain(child.stdout.take()), drain(child.stderr.take())];
        Session {
            binary: binary.to_owned(),
            child,
            started,
            shared,
            payloads,
            answers,
            server,
            logs,
        }
    }

    /// Exec → the first `GET /next`, once the process has asked (`None` before).
    pub fn init(&self) -> Option<Duration> {
        let polled = *self.shared.polled.lock().unwrap();
        polled.map(|t| t - self.started)
    }

    /// Hands out one invocation and waits for its answer (30 s at most); returns the answer and
    /// the time since [`Session::start`] when it came.
    pub async fn invoke(&mut self, payload: Value) -> (Answer, Duration) {
        let _ = self.payloads.send(payload);
        let answer = tokio::select! {
            a = self.answers.recv() => a.expect("the runtime API is up"),
            status = self.child.wait() => Answer::Exited(status.ok().and_then(|s| s.code())),
            _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("{}: no answer within 30 s", self.binary),
        };
        (answer, self.started.elapsed())
    }

    /// `(peak resident set in KiB, CPU time so far)` of the process, from `/proc` (Linux).
    pub fn usage(&self) -> Option<(u64, Duration)> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        // Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime, stime.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux Lambda and CI machine.
        Some((hwm, Duration::from_millis(ticks * 10)))
    }

    /// Stops the process and returns what it logged.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.server.abort();
        // Logs: the runtime's tracing goes to stdout (as on Lambda), a failed `main` to stderr.
        let [stdout, stderr] = self.logs;
        let (stdout, stderr) = (
            stdout.await.unwrap_or_default(),
            stderr.await.unwrap_or_default(),
        );
        let logs = String::from_utf8_lossy(&stdout) + String::from_utf8_lossy(&stderr);
        crate::assert_no_secret(&format!("{}'s log", self.binary), &logs);
        logs.into_owned()
    }
}

/// Runs `binary` for one invocation with `payload` and returns what it answered (30 s at most)
/// and what it logged.
pub async fn invoke(binary: &str, env: &[(&str, String)], payload: Value) -> (Answer, String) {
    let mut session = Session::start(binary, env).await;
    let (answer, _) = session.invoke(payload).await;
    let logs = session.stop().await;
    crate::assert_no_secret(&format!("{binary}'s answer"), &format!("{answer:?}"));
    (answer, logs)
}
