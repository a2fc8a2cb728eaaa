//! The README's walkthrough against the real binary: `hookbridge serve` on the built-in
//! config, the fixtures posted over HTTP, `hookbridge deliveries` showing the outcome.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_with_the_built_in_config_handles_the_fixtures() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(fresh_data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Serve(child);
    // Keep reading stdout: closing the pipe would kill serve on its next line of output.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve printed its address");
    let base = first.rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");

    let client = hookbridge_tests::http_client();
    let post = |path: &str, fixture: &str| {
        let req = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("X-Hookbridge-Token", "hookbridge-demo-token")
            .body(std::fs::read(format!("{FIXTURES}/{fixture}")).unwrap());
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let answer = post("/hap/message", "hap-message-todo.json").await;
    assert!(answer.contains("\"success\":true"), "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = post("/hap/todo", "hap-finish-todo.json").await;
    assert!(answer.contains("\"success\":true"), "{answer}");

    let mut table = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
            .args(["deliveries", "--url", &base])
            .output()
            .unwrap();
        table = String::from_utf8(out.stdout).unwrap();
        if table.lines().filter(|l| l.starts_with("dry_run")).count() == 3 {
            break;
        }
    }
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows.iter().all(|r| r.starts_with("dry_run")), "{table}");
    assert!(
        table.contains("update_status") && table.contains("status_bar/update"),
        "{table}"
    );
    assert_eq!(table.matches("asyncsend_v2").count(), 2, "{table}");

    // What it did, counted, on /metrics: the two requests, a repeat and a forgery.
    let answer = post("/hap/message", "hap-message-todo.json").await;
    assert!(answer.contains("\"success\":true"), "{answer}");
    let forged = client
        .post(format!("{base}/hap/message"))
        .header("X-Hookbridge-Token", "guessed")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for line in [
        "# TYPE hookbridge_accepted_total counter",
        "hookbridge_accepted_total{source=\"hap\"} 2",
        "hookbridge_duplicates_total{source=\"hap\"} 1",
        "hookbridge_rejected_total{source=\"hap\",reason=\"unauthorized\"} 1",
        "# TYPE hookbridge_send_latency_milliseconds summary",
        "hookbridge_send_latency_milliseconds_count{connector=\"dingtalk\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

/// `hookbridge dms verify ARGS` with the key on stdin.
fn dms_verify(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["dms", "verify"])
        .args(args)
        .env_remove("DMS_SIGNATURE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"dms-secret\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn dms_verify_names_the_construction_of_a_captured_request() {
    let body = format!("{FIXTURES}/dms-approval-pending.json");
    let out = dms_verify(&["--body", &body]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("matched: A/sorted"), "{stdout}");
    assert!(
        stdout.contains("signature_variant = \"A/sorted\""),
        "{stdout}"
    );

    let vendor = format!("{FIXTURES}/dms-test-message.json");
    let out = dms_verify(&["--body", &vendor, "--url", "https://hook.example.com/dms"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no construction of 26 matched"), "{stderr}");

    // The key never goes on the command line.
    let refused = dms_verify(&["--body", &body, "--key", "dms-secret"]);
    assert!(!refused.status.success());
    let from_env = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["dms", "verify", "--body", &body])
        .env("DMS_SIGNATURE_KEY", "dms-secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&from_env.stdout).contains("matched: A/sorted"),
        "the key from DMS_SIGNATURE_KEY"
    );
}

fn config_check(config: Option<&str>, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.args(["config", "check"]).args(extra);
    if let Some(text) = config {
        let path = std::env::temp_dir().join(format!(
            "hookbridge-check-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn config_check_renders_a_fixture_and_points_at_mistakes() {
    let (ok, out) = config_check(
        None,
        &["--fixture", &format!("{FIXTURES}/hap-message-todo.json")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("→ /hap/message: 2 deliveries"), "{out}");
    assert!(
        out.contains("\"status_value\": \"待处理\""),
        "the full asyncsend_v2 body: {out}"
    );
    // Without --path, the source that recognizes the body names it.
    for (fixture, path) in [
        ("hap-finish-todo.json", "/hap/todo"),
        ("dms-approval-pending.json", "/dms"),
        ("alertmanager-firing.json", "/alertmanager"),
    ] {
        let (ok, out) = config_check(None, &["--fixture", &format!("{FIXTURES}/{fixture}")]);
        assert!(
            ok && out.contains(&format!("→ {path}:")),
            "{fixture}: {out}"
        );
    }

    let unknown = "[sources.hap]\ntokens = [\"plain:t\"]\ntoken_header = \"x\"\n";
    let (ok, out) = config_check(Some(unknown), &[]);
    assert!(
        !ok && out.contains("token_header") && out.contains("line 3"),
        "{out}"
    );

    let template = "[sources.hap]\ntokens = [\"plain:t\"]\n[templates.t]\ntitle = \"ok\"\ntext = \"{% if %}\"\n";
    let (ok, out) = config_check(Some(template), &[]);
    assert!(
        !ok && out.contains("templates.t.text") && out.contains("line 1"),
        "{out}"
    );

    // Every unset variable is named at once, not only the first.
    let secret = "[sources.hap]\ntokens = [\"env:HOOKBRIDGE_CHECK_UNSET\", \"env:HOOKBRIDGE_CHECK_UNSET_2\"]\n";
    let (ok, out) = config_check(Some(secret), &[]);
    assert!(
        !ok && out.contains("not set: HOOKBRIDGE_CHECK_UNSET, HOOKBRIDGE_CHECK_UNSET_2"),
        "{out}"
    );
}

/// `hookbridge serve` on the built-in config with stderr piped, and its base URL once it
/// listens. Its stdout is closed after the first line: serve must keep running without a
/// reader (it once died of the broken pipe on its second line).
fn serve_with_stderr() -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(fresh_data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "{first}");
    let base = first.rsplit(' ').next().unwrap().to_owned();
    (child, base)
}

/// SIGTERM (what `kill`, systemd and container runtimes send) stops serve cleanly: exit 0.
#[test]
fn serve_exits_zero_on_sigterm() {
    let (mut child, _) = serve_with_stderr();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            child.try_wait().unwrap()
        })
        .expect("serve exited within 10 s of SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
}

/// Values from a request cannot forge a log line, hide NUL bytes or colour the terminal, and a
/// long id is cut with a hash; stderr is not a terminal here, so there is no ANSI at all.
#[tokio::test]
async fn hostile_values_are_escaped_in_serve_log() {
    let (mut child, base) = serve_with_stderr();
    let stderr = child.stderr.take().unwrap();
    let _guard = Serve(child);
    let forged = "x\n2026-12-02T00:00:00.000000Z  INFO hookbridge: forged\u{0}\u{1b}[31m";
    let long = "L".repeat(300);
    let client = hookbridge_tests::http_client();
    for id in [forged, long.as_str()] {
        let body = serde_json::json!({"messageId": id, "message": id, "targets": [id]});
        let resp = client
            .post(format!("{base}/hap/message"))
            .header("X-Hookbridge-Token", "hookbridge-demo-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Read what serve logged so far (it keeps running; the reader stops at a quiet moment).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut log = vec![];
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(1500)) {
        log.extend(chunk);
    }
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("accepted"), "{log}");
    assert!(!log.contains('\0') && !log.contains('\u{1b}'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO hookbridge: forged") && !l.contains("\\n")),
        "a forged line: {log}"
    );
    assert!(
        log.contains("x\\n2026-12-02"),
        "escaped, still readable: {log}"
    );
    assert!(!log.contains(&long), "a 300-character id is cut");
    assert!(
        log.contains(&format!("EVT#hap#{}…#", "L".repeat(92))),
        "{log}"
    );
}

/// A data directory of its own for one `serve`.
fn fresh_data_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hookbridge-serve-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `kill -9` right after `serve` acknowledged a burst: after a restart on the same data every
/// acknowledged event is there, each delivered once, and the sources' retries are duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_the_answer_loses_nothing_and_duplicates_nothing() {
    let data = fresh_data_dir();
    let start = |data: &std::path::Path| common::serve(&["--data".as_ref(), data.as_os_str()]);
    let body = std::fs::read_to_string(format!("{FIXTURES}/hap-message-mention.json")).unwrap();
    let post = |base: String, id: usize| {
        let body = body.replace(
            "9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a",
            &format!("burst-{id}"),
        );
        async move {
            hookbridge_tests::http_client()
                .post(format!("{base}/hap/message"))
                .header("content-type", "application/json")
                .header("X-Hookbridge-Token", "hookbridge-demo-token")
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let (mut first, base) = start(&data);
    let answers = futures_join((0..50).map(|i| post(base.clone(), i)).collect::<Vec<_>>()).await;
    assert!(
        answers.iter().all(|a| a.contains("\"duplicate\":false")),
        "{answers:?}"
    );
    // No SIGTERM, no flush: the process is gone at once.
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, base) = start(&data);
    let retries = futures_join((0..50).map(|i| post(base.clone(), i)).collect::<Vec<_>>()).await;
    assert!(
        retries.iter().all(|a| a.contains("\"duplicate\":true")),
        "{retries:?}"
    );
    let mut rows = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
            .args([
                "deliveries",
                "--url",
                &base,
                "list",
                "--limit",
                "500",
                "--json",
            ])
            .output()
            .unwrap();
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows = all.len();
        let done = all.iter().filter(|d| d["status"] == "dry_run").count();
        if done == 50 {
            break;
        }
    }
    assert_eq!(
        rows, 50,
        "one delivery per acknowledged event, none lost, none twice"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

async fn futures_join<F>(futures: Vec<F>) -> Vec<String>
where
    F: std::future::Future<Output = String> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    set.join_all().await
}
