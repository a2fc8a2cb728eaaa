//! `hookbridge deliveries` where the deliveries are: serve's data directory (asked through the
//! running serve, or read directly once it stopped) and the stack's table on DynamoDB Local.
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

mod common;

use hookbridge::event::{Action, Delivery, Event, Settled, Status};
use hookbridge::store::{DeliveryStore, EventStore, HistoryStore};
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{HAP_TOKEN, config_text, dynamo_store, dynamodb_endpoint, fixture};

const SEND: &str = "/topapi/message/corpconversation/asyncsend_v2";

/// `hookbridge COMMAND ARGS` with `env`: whether it succeeded, and stdout + stderr.
async fn hookbridge(command: &str, args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.arg(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn deliveries(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    hookbridge("deliveries", args, env).await
}

async fn status(args: &[&str]) -> (bool, String) {
    hookbridge("status", args, &[]).await
}

/// `deliveries --data DIR list --json` with `filter`, until `n` are listed (bounded: 10 s).
async fn listed(data: &Path, filter: &[&str], n: usize) -> Vec<Delivery> {
    let dir = data.to_str().unwrap();
    for _ in 0..100 {
        let mut args = vec!["--data", dir, "list", "--json"];
        args.extend(filter);
        let (ok, out) = deliveries(&args, &[]).await;
        // stdout first, then what the CLI said on stderr.
        let json = out
            .find('[')
            .zip(out.rfind(']'))
            .map_or("", |(a, b)| &out[a..=b]);
        if let (true, Ok(list)) = (ok, serde_json::from_str::<Vec<Delivery>>(json))
            && list.len() == n
        {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} deliveries matching {filter:?} were not listed");
}

fn start(config: &Path, data: &Path) -> (Child, String) {
    common::serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ])
}

fn stop(mut serve: Child) {
    let pid = serve.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(serve.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_delivery_is_found_and_replayed_in_the_data_directory() {
    let fake = FakeDingTalk::start().await;
    fake.inject(
        SEND,
        200,
        r#"{"errcode":60020,"errmsg":"访问ip不在白名单之中"}"#,
        1,
    );
    let dir = std::env::temp_dir().join(format!(
        "hookbridge-cli-deliveries-{}-{}",
        std::process::id(),
        hookbridge::event::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    let govding = format!(
        "[sources.govding]\npath_token = \"plain:{}\"\n",
        hookbridge_tests::GOVDING_PATH_TOKEN
    );
    std::fs::write(&config, config_text(Some(&fake.url), &govding)).unwrap();
    let data = dir.join("data");

    let (serve, base) = start(&config, &data);
    // A callback nobody can read makes no delivery: `events` lists it, its bytes escaped.
    let unreadable = hookbridge_tests::http_client()
        .post(format!(
            "{base}/govding/{}",
            hookbridge_tests::GOVDING_PATH_TOKEN
        ))
        .body("\u{1b}[31mnot a callback")
        .send()
        .await
        .unwrap();
    assert_eq!(unreadable.status(), 200, "stored and acknowledged");
    let resp = hookbridge_tests::http_client()
        .post(format!("{base}/hap/message"))
        .header("X-Hookbridge-Token", HAP_TOKEN)
        .header("content-type", "application/json")
        .body(fixture("hap-message-mention.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // serve holds the data file: the CLI asks serve, at the address it left beside the file.
    let dead = listed(&data, &["--status", "dead"], 1).await;
    let id = format!("{}/{}", dead[0].pk, dead[0].sk);
    let (ok, out) = deliveries(&["--data", data.to_str().unwrap(), "list"], &[]).await;
    assert!(ok && out.contains("asking it at http://"), "{out}");
    let (ok, out) = hookbridge(
        "events",
        &["--data", data.to_str().unwrap(), "--kind", "unreadable"],
        &[],
    )
    .await;
    assert!(
        ok && out.contains("govding")
            && out.contains("\\u{1b}[31mnot a callback")
            && !out.contains('\u{1b}'),
        "{out}"
    );
    stop(serve);
    // Stopped: read from the file, the mention and the unreadable one.
    let (ok, out) = hookbridge("events", &["--data", data.to_str().unwrap(), "--json"], &[]).await;
    let events: Vec<hookbridge::event::Event> =
        serde_json::from_str(&out[out.find('[').unwrap()..]).unwrap_or_default();
    assert!(ok && events.len() == 2, "{out}");

    // Stopped: the CLI reads the file itself.
    let dir_arg = data.to_str().unwrap();
    let (ok, out) = deliveries(&["--data", dir_arg, "show", &id], &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("status     dead") && out.contains("60020"),
        "{out}"
    );
    assert!(!out.contains("asking it"), "{out}");
    let (ok, out) = deliveries(&["--data", dir_arg, "replay"], &[]).await;
    assert!(!ok && out.contains("--status dead"), "{out}");
    let (ok, out) = deliveries(&["--data", dir_arg, "replay", "--status", "dead"], &[]).await;
    assert!(ok && out.contains("replayed 1 of 1"), "{out}");
    // Pending again, and just now: not left behind.
    let (ok, out) = deliveries(&["--data", dir_arg, "replay", "--status", "pending"], &[]).await;
    assert!(
        ok && out.contains("replayed 0 of 1 pending") && out.contains("left behind for 15 minutes"),
        "{out}"
    );
    let (ok, out) = deliveries(&["--data", dir_arg, "replay", &id], &[]).await;
    assert!(!ok && out.contains("only dead deliveries"), "{out}");

    // Started again, serve sends what was replayed.
    let (serve, _) = start(&config, &data);
    let sent = listed(&data, &["--status", "sent"], 1).await;
    assert_eq!((sent[0].attempts, sent[0].replays.len()), (1, 1));
    assert_eq!(fake.calls(SEND).len(), 2);
    // One call counted against the monthly quota: the refused one is not. serve writes its
    // counts on its sweep tick (every second here): waited for, 5 s at most.
    let month = hookbridge::event::beijing_month(hookbridge::event::now_ms());
    let (mut out, mut cols) = (String::new(), vec![]);
    for _ in 0..25 {
        let (ok, said) = status(&["--data", dir_arg]).await;
        assert!(ok && said.contains("asking it at"), "{said}");
        out = said;
        cols = out
            .lines()
            .find(|l| l.starts_with("dingtalk#ding-fake-key"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !cols.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        cols,
        [
            "dingtalk#ding-fake-key",
            month.as_str(),
            "1",
            "5000",
            "0",
            "%"
        ],
        "{out}"
    );
    stop(serve);
    let (ok, out) = status(&["--data", dir_arg, "--json"]).await;
    assert!(ok, "{out}");
    let usage: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (usage[0]["calls"].as_u64(), usage[0]["period"].as_str()),
        (Some(1), Some(month.as_str()))
    );
    let (ok, out) = status(&["--data", dir_arg, "--month", "2001-01"]).await;
    assert!(
        ok && out.contains("no API calls counted in 2001-01"),
        "{out}"
    );
    let (ok, out) = deliveries(&["--data", dir.join("none").to_str().unwrap()], &[]).await;
    assert!(!ok && out.contains("no data in"), "{out}");
}

/// One delivery of `connector` to `recipients` for a new event `source`/`key` in the table,
/// claimed and settled as `settled` says; and the environment that reaches DynamoDB Local.
async fn settled_in_table(
    store: &hookbridge::store::dynamodb::DynamoStore,
    (source, key): (&str, &str),
    connector: &str,
    recipients: &[&str],
    settled: Settled,
) -> (Delivery, Vec<(&'static str, String)>) {
    let event = Event {
        source: source.into(),
        key: key.into(),
        kind: "x".into(),
        received_at: 1_000,
        payload: serde_json::json!({}),
        raw: "{}".into(),
    };
    let d = Delivery::new(
        &event.pk(),
        connector,
        0,
        Action::Send,
        recipients.iter().map(|r| (*r).to_owned()).collect(),
        serde_json::json!({"title": "审批"}),
        1_000,
    );
    store
        .insert(&event, std::slice::from_ref(&d))
        .await
        .unwrap();
    let claimed = store.claim(&d.key(), 2_000, 3_000).await.unwrap().unwrap();
    assert!(store.record(&claimed, &settled, 2_500).await.unwrap());
    let env = vec![
        ("AWS_ENDPOINT_URL", dynamodb_endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "x".into()),
        ("AWS_SECRET_ACCESS_KEY", "x".into()),
    ];
    (d, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stacks_table_is_listed_shown_and_replayed() {
    let store = dynamo_store().await;
    let dead = Settled {
        status: Status::Dead,
        attempts: 1,
        result: None,
        last_error: Some("ZenTao: 该IP不在白名单".into()),
        next_attempt_at: None,
    };
    let (d, env) = settled_in_table(&store, ("dms", "approval-1"), "zentao", &["lisi"], dead).await;
    let table = store.table().to_owned();
    let id = format!("{}/{}", d.pk, d.sk);
    let (ok, out) = deliveries(
        &[
            "--table", &table, "list", "--status", "dead", "--source", "dms",
        ],
        &env,
    )
    .await;
    assert!(
        ok && out.contains(&id) && out.contains("该IP不在白名单"),
        "{out}"
    );
    let (ok, out) = deliveries(
        &["--table", &table, "list", "--connector", "dingtalk"],
        &env,
    )
    .await;
    assert!(ok && !out.contains(&id), "{out}");
    let (ok, out) = deliveries(&["--table", &table, "show", &id, "--json"], &env).await;
    assert!(ok, "{out}");
    let shown: Delivery = serde_json::from_str(&out).unwrap();
    assert_eq!(shown.status, Status::Dead);
    let (ok, out) = deliveries(&["--table", &table, "replay", &id], &env).await;
    assert!(ok && out.contains("it had spent 1"), "{out}");
    let now = store.delivery(&d.key()).await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.attempts, now.replays.len()),
        (Status::Pending, 0, 1)
    );
    let (ok, out) = deliveries(&["--table", &table, "recall", &id], &env).await;
    assert!(!ok && out.contains("only sent deliveries"), "{out}");
}

/// `show` prints what DingTalk reported per person for a send it then dropped.
#[tokio::test]
async fn show_prints_each_recipients_outcome() {
    let store = dynamo_store().await;
    let undelivered = Settled {
        status: Status::Undelivered,
        attempts: 1,
        result: Some(serde_json::json!({
            "task_id": 9,
            "outcomes": {"u0": "forbidden 143105: the person's daily cap", "u1": "invalid userid"},
        })),
        last_error: Some("DingTalk accepted the send but nobody got it".into()),
        next_attempt_at: None,
    };
    let (d, env) = settled_in_table(
        &store,
        ("hap", "n-cap"),
        "dingtalk",
        &["u0", "u1"],
        undelivered,
    )
    .await;
    let id = format!("{}/{}", d.pk, d.sk);
    let (ok, out) = deliveries(&["--table", store.table(), "show", &id], &env).await;
    assert!(ok, "{out}");
    assert!(out.contains("status     undelivered"), "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"u0                   forbidden 143105: the person's daily cap"),
        "{out}"
    );
    assert!(
        lines.contains(&"u1                   invalid userid"),
        "{out}"
    );
    let (ok, out) = deliveries(
        &["--table", store.table(), "list", "--status", "undelivered"],
        &env,
    )
    .await;
    assert!(ok && out.contains(&id), "{out}");
}

/// Ids and recipients come from webhooks: printed as the log prints them, escaped, so a forged
/// line or an ANSI escape never reaches the operator's terminal; wide CJK text keeps the
/// columns aligned; `--json` stays exact.
#[tokio::test]
async fn attacker_text_is_escaped_and_columns_stay_aligned() {
    let store = dynamo_store().await;
    // No NUL in the id only because an argument cannot carry one; the reason has one.
    let hostile =
        "m1\n2026-12-06T00:00:00Z  INFO hookbridge: FORGED LINE accepted\u{1b}[31m\u{7}\r";
    let dead = Settled {
        status: Status::Dead,
        attempts: 1,
        result: None,
        last_error: Some(format!("no such user {hostile}\0")),
        next_attempt_at: None,
    };
    let (d, env) = settled_in_table(
        &store,
        ("hap", hostile),
        "zentao",
        &["张三丰", "\u{202e}lisi"],
        dead,
    )
    .await;
    let plain = Settled {
        status: Status::Dead,
        attempts: 1,
        result: None,
        last_error: Some("x".into()),
        next_attempt_at: None,
    };
    settled_in_table(&store, ("hap", "m2"), "zentao", &["ab"], plain).await;
    let table = store.table().to_owned();
    for args in [
        vec!["--table", table.as_str(), "list"],
        vec![
            "--table",
            table.as_str(),
            "show",
            &format!("{}/{}", d.pk, d.sk),
        ],
    ] {
        let (ok, out) = deliveries(&args, &env).await;
        assert!(ok, "{out}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n') && !out.contains('\u{202e}'),
            "{args:?}: {out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("2026-12-06T00:00:00Z")),
            "a forged line: {out}"
        );
        assert!(out.contains("m1\\n2026-12-06T00:00:00Z"), "{out}");
    }
    // The delivery column starts at the same terminal column, whatever the recipients' script.
    let (_, out) = deliveries(&["--table", &table, "list"], &env).await;
    let starts: Vec<usize> = out
        .lines()
        .filter(|l| l.contains("EVT#hap#"))
        .map(|l| unicode_width::UnicodeWidthStr::width(&l[..l.find("EVT#hap#").unwrap()]))
        .collect();
    assert_eq!(starts.len(), 2, "{out}");
    assert_eq!(starts[0], starts[1], "{out}");
    let (ok, out) = deliveries(
        &[
            "--table",
            &table,
            "show",
            &format!("{}/{}", d.pk, d.sk),
            "--json",
        ],
        &env,
    )
    .await;
    assert!(ok);
    let shown: Delivery = serde_json::from_str(&out).unwrap();
    assert_eq!(shown.pk, format!("EVT#hap#{hostile}"), "--json is exact");
}

/// `hookbridge console --table T` serves the console on 127.0.0.1 against the stack's table:
/// the dead delivery is listed, and its replay (a form with the page's CSRF token) makes it
/// pending in the table. It listens on this machine only.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_against_the_stacks_table() {
    let store = dynamo_store().await;
    let dead = Settled {
        status: Status::Dead,
        attempts: 1,
        result: None,
        last_error: Some("ZenTao: 该IP不在白名单".into()),
        next_attempt_at: None,
    };
    let (d, env) = settled_in_table(&store, ("dms", "console-1"), "zentao", &["lisi"], dead).await;
    let table = store.table().to_owned();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["console", "--table", &table, "--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = {
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap()
    };
    let console = first.rsplit(' ').next().unwrap().to_owned();
    let base = console.trim_end_matches("/console").to_owned();
    let client = hookbridge_tests::http_client();
    let page = client
        .get(format!("{console}/deliveries?status=dead&lang=en"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("该IP不在白名单") && page.contains("zentao"),
        "{page}"
    );
    let shown = client
        .get(format!(
            "{console}/delivery?id={}",
            urlencode(&d.key().to_string())
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = shown
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's form carries the CSRF token");
    let form = format!("id={}&csrf={csrf}", urlencode(&d.key().to_string()));
    let replayed = client
        .post(format!("{console}/replay"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    // Followed from its 303: the delivery's page, saying so.
    let landed = replayed.text().await.unwrap();
    assert!(landed.contains("已重放"), "{landed}");
    let now = store.delivery(&d.key()).await.unwrap().unwrap();
    assert_eq!(now.status, Status::Pending);
    let _ = child.kill();
    let _ = child.wait();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let (ok, out) = hookbridge(
        "console",
        &["--table", &table, "--listen", "0.0.0.0:0"],
        &env,
    )
    .await;
    assert!(!ok && out.contains("this machine only"), "{out}");
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
