//! `hookbridge check --online`: the preflight asks each configured system, read-only, against
//! fakes that follow the systems' rules, and exits non-zero when anything is ✖.

use std::process::Command;

mod common;

use hookbridge_tests::fake_dingtalk::{self, FakeDingTalk};
use hookbridge_tests::fake_govding::{self, FakeGovDing};
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::fake_zentao::{
    self, EMPTY_GROUP, FakeZenTao, GROUP, READER, READER_PASSWORD,
};

/// `hookbridge check ARGS --config <text>`: (success, stdout, stderr).
async fn check(name: &str, config: &str, args: &[&str]) -> (bool, String, String) {
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("check-{name}.toml"));
    std::fs::write(&file, config).unwrap();
    let mut argv = vec![
        "check".to_owned(),
        "--config".to_owned(),
        file.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hookbridge"))
            .args(&argv)
            .env_remove("HOOKBRIDGE_CONFIG_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn dingtalk(url: &str, agent_id: i64) -> String {
    format!(
        "[connectors.dingtalk]\nagent_id = {agent_id}\napp_key = \"{}\"\napp_secret = \"plain:{}\"\nbase_url = \"{url}\"\n",
        fake_dingtalk::APP_KEY,
        fake_dingtalk::APP_SECRET
    )
}

fn lines_with(out: &str, mark: char) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with(mark)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_that_works_passes_and_says_what_to_paste() {
    let dt = FakeDingTalk::start().await;
    let zt = FakeZenTao::start().await;
    let gd = FakeGovDing::start().await;
    let robot = FakeRobot::start(true, None).await;
    let config = format!(
        "[sources.hap]\ntokens = [\"plain:t\"]\n\n{}\n{}\n{}\n\
         [connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\ngroup = \"{GROUP}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n\
         [recipients.dingtalk.map]\na = \"manager4220\"\nb = \"lisi-dt\"\n",
        dingtalk(&dt.url, fake_dingtalk::AGENT_ID),
        fake_zentao::instance(&zt.url),
        fake_govding::hap_route(&gd.url, fake_govding::APP_SECRET)
            .split("\n[[routes]]")
            .next()
            .unwrap(),
        robot.webhook(),
    );
    let (ok, out, err) = check(
        "works",
        &config,
        &[
            "--online",
            "--send-test",
            "--url",
            "https://hooks.example.com",
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(lines_with(&out, '✖').is_empty(), "{out}");
    for want in [
        "✔ config:",
        "· hap: POST https://hooks.example.com/hap/message, POST https://hooks.example.com/hap/todo",
        "✔ dingtalk: gettoken works",
        &format!(
            "✔ dingtalk: agent_id {} is the app's",
            fake_dingtalk::AGENT_ID
        ),
        "✔ dingtalk: 2 mapped userids exist",
        "✔ zentao main: the entry, code and key work (2 group chats)",
        "✔ zentao main: ZenTao's clock is",
        &format!("✔ zentao main: group chat {GROUP} (运维群) has 2 members"),
        "✔ govding: gettoken works",
        &format!("✔ govding: tenant {} answers", fake_govding::TENANT),
        "✔ dingtalk_robot ops: the test message was posted",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "no {want:?} in\n{out}"
        );
    }
    assert_eq!(
        robot.posted().len(),
        1,
        "one test message, because --send-test"
    );
    assert!(
        dt.count("asyncsend_v2") == 0,
        "nothing sent to DingTalk users"
    );
    assert!(zt.calls("sendNotification").is_empty() && zt.calls("sendChatMessage").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn what_does_not_work_is_said_with_what_to_do_and_fails_the_check() {
    let dt = FakeDingTalk::start().await;
    dt.set_invalid_users(&["ghost"]);
    let zt = FakeZenTao::start().await;
    let robot = FakeRobot::start(false, None).await;
    let config = format!(
        "[sources.hap]\ntokens = [\"plain:t\"]\n[sources.dms]\n\n{}\n[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{}\"\nkey = \"plain:{}\"\nusers_by = \"id\"\n\
         [connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk\"\nusers = [\"ghost\", \"someone\"]\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\ngroup = \"nope\"\n\
         [[routes]]\nsource = \"dms\"\nconnector = \"zentao\"\ngroup = \"{EMPTY_GROUP}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n\
         [recipients.zentao.map]\na = \"3\"\nb = \"99\"\n",
        dingtalk(&dt.url, 42),
        zt.url,
        fake_zentao::CODE,
        fake_zentao::KEY,
        robot.webhook(),
    );
    let (ok, out, err) = check("fails", &config, &["--online"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("some checks failed"), "{err}");
    let failed = lines_with(&out, '✖').join("\n");
    for want in [
        "✖ dingtalk: agent_id 42: DingTalk",
        "✖ dingtalk: not userids of this organization: ghost",
        "✖ zentao main: ZenTao main has no group chat nope",
        &format!("✖ zentao main: ZenTao group chat {EMPTY_GROUP}"),
        "✖ zentao main: not ZenTao users: 99",
    ] {
        assert!(
            failed.lines().any(|l| l.starts_with(want)),
            "no {want:?} in\n{out}"
        );
    }
    assert!(
        out.contains("· dingtalk_robot ops: not asked"),
        "a robot is posted to only with --send-test: {out}"
    );
    assert!(robot.calls().is_empty());
    assert!(
        zt.calls("sendChatMessage").is_empty(),
        "a preflight never sends"
    );
}

/// An app that lists other addresses: the preflight says which address it saw.
#[tokio::test(flavor = "multi_thread")]
async fn an_unlisted_address_is_named() {
    let dt = FakeDingTalk::start().await;
    dt.allowlist.only(&["127.0.0.2"]);
    let zt = FakeZenTao::start().await;
    zt.allowlist.only(&["127.0.0.2"]);
    let config = format!(
        "{}\n{}",
        dingtalk(&dt.url, fake_dingtalk::AGENT_ID),
        fake_zentao::instance(&zt.url)
    );
    let (ok, out, _) = check("unlisted", &config, &["--online"]).await;
    assert!(!ok);
    let failed = lines_with(&out, '✖').join("\n");
    assert!(failed.contains("came from 127.0.0.1"), "{out}");
    assert!(failed.contains("IP_DENIED"), "{out}");
}

/// `--from-stack`: the stack's sender functions ask (through the AWS Lambda Invoke API, here a
/// fake whose functions run the real sender handler), each for its own connector.
#[tokio::test(flavor = "multi_thread")]
async fn from_the_stack_each_sender_function_asks_for_its_connector() {
    use hookbridge::app::{App, Parts};
    use hookbridge_tests::fake_cloudformation::{self, STACK};
    use hookbridge_tests::fake_lambda::FakeLambda;

    let dt = FakeDingTalk::start().await;
    let zt = FakeZenTao::start().await;
    let config = format!(
        "[sources.hap]\ntokens = [\"plain:t\"]\n{}\n{}",
        dingtalk(&dt.url, fake_dingtalk::AGENT_ID),
        fake_zentao::instance(&zt.url)
    );
    let mut functions = vec![];
    for (connector, function) in [
        ("dingtalk", "hookbridge-DingTalkSenderFunction"),
        ("zentao", "hookbridge-ZenTaoSenderFunction"),
    ] {
        let app = App::build(
            hookbridge::config::Config::from_toml(&config).unwrap(),
            std::sync::Arc::new(hookbridge::store::memory::MemoryStore::new()),
            &hookbridge::config::Secrets::default(),
            Parts::Connector(connector),
        )
        .await
        .unwrap();
        functions.push((function.to_owned(), std::sync::Arc::new(app)));
    }
    let lambda = FakeLambda::start(functions).await;
    let cfn = fake_cloudformation::start(false).await;
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-stack.toml");
    std::fs::write(&file, &config).unwrap();
    let file = file.display().to_string();
    let lambda_url = lambda.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        common::aws_command(
            &[
                "check",
                "--online",
                "--from-stack",
                "--stack",
                STACK,
                "--config",
                &file,
            ],
            &[
                ("AWS_ENDPOINT_URL_CLOUDFORMATION", &cfn),
                ("AWS_ENDPOINT_URL_LAMBDA", &lambda_url),
            ],
        )
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        lambda.invoked(),
        [
            "hookbridge-DingTalkSenderFunction",
            "hookbridge-ZenTaoSenderFunction"
        ]
    );
    assert!(stdout.contains("✔ dingtalk: gettoken works"), "{stdout}");
    assert!(
        stdout.contains("✔ zentao main: the entry, code and key work"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://abc123.execute-api"),
        "the stack's URL: {stdout}"
    );
}

/// Mapped accounts are checked against ZenTao's user list when the instance has a directory
/// login; without one the preflight says they were not checked.
#[tokio::test(flavor = "multi_thread")]
async fn zentao_accounts_are_checked_through_a_directory_login() {
    let zt = FakeZenTao::start().await;
    let map = "[recipients.zentao.map]\na = \"zhangsan\"\nb = \"nobody\"\n";
    let plain = format!("{}{map}", fake_zentao::instance(&zt.url));
    let (ok, out, _) = check("accounts-plain", &plain, &["--online"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("· zentao main: 2 mapped accounts not checked"),
        "{out}"
    );
    let login = format!(
        "{}directory = {{ account = \"{READER}\", password = \"plain:{READER_PASSWORD}\" }}\n{map}",
        fake_zentao::instance(&zt.url)
    );
    let (ok, out, _) = check("accounts-login", &login, &["--online"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("✖ zentao main: not ZenTao users: nobody"),
        "{out}"
    );
}
