//! `hookbridge govding` against the fake 浙政钉 gateway and a running `hookbridge serve`: the
//! gateway checks the callback URL on registration, delivers events to it, keeps what failed
//! every retry, and redelivers it on `failed --retry all`.
use std::process::{Child, Command};

mod common;

use hookbridge_tests::fake_govding::{APP_KEY, APP_SECRET, FakeGovDing, TENANT};
use hookbridge_tests::fixture;

const TOKEN: &str = "cli-govding-token-0123456";
const LEAVE: &str = "MOZI_VDS_TENANT_CHANGE|EMPLOYEE_LEAVE";

fn config_file(fake: &FakeGovDing) -> String {
    let dir = std::env::temp_dir().join(format!("hookbridge-govding-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per fake gateway: tests run at once.
    let port = fake.url.rsplit(':').next().unwrap();
    let path = dir.join(format!("config-{port}.toml"));
    let text = format!(
        "[sources.govding]\npath_token = \"plain:{TOKEN}\"\n\n\
         [connectors.govding]\nbase_url = \"{}\"\napp_key = \"{APP_KEY}\"\napp_secret = \"plain:{APP_SECRET}\"\ntenant_id = \"{TENANT}\"\n\n\
         [connectors.dingtalk]\nagent_id = 1\n\n\
         [[routes]]\nsource = \"govding\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n",
        fake.url
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `hookbridge serve` on this config; its base URL once it listens.
fn serve(config: &str) -> (Child, String) {
    common::serve(&["--config".as_ref(), config.as_ref(), "--memory".as_ref()])
}

async fn govding(config: &str, args: &[&str]) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_hookbridge");
    let mut all = vec![
        "govding".to_owned(),
        "--config".to_owned(),
        config.to_owned(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = tokio::task::spawn_blocking(move || Command::new(bin).args(&all).output().unwrap())
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn register_receive_fail_and_retry() {
    let fake = FakeGovDing::start().await;
    let config = config_file(&fake);
    let (mut first, base) = serve(&config);

    let (ok, out) = govding(
        &config,
        &["register", "--callback-base", &base, "--dry-run"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("callbackUrl {base}/govding/{TOKEN}")),
        "{out}"
    );
    assert_eq!(out.matches("would register").count(), 18, "{out}");
    assert!(fake.registrations().is_empty(), "a dry run calls nothing");

    let (ok, out) = govding(&config, &["register", "--callback-base", &base]).await;
    assert!(ok, "{out}");
    assert_eq!(
        fake.registrations().len(),
        18,
        "every connectivity check passed: {out}"
    );

    // A base without the right path is refused by the gateway's connectivity check.
    let (ok, out) = govding(
        &config,
        &[
            "register",
            "--callback-base",
            &format!("{base}/x"),
            "--tag",
            LEAVE,
        ],
    )
    .await;
    assert!(
        !ok && out.contains("NOT registered") && out.contains("连通性检查失败"),
        "{out}"
    );

    let leave = fixture("govding-employee-leave.json");
    assert!(
        fake.callback(LEAVE, &leave).await,
        "serve answers the gateway"
    );
    let (ok, out) = govding(&config, &["callbacks"]).await;
    assert!(ok && out.contains(LEAVE), "{out}");

    // hookbridge is down: the gateway gives up after its retries and keeps the callback.
    first.kill().unwrap();
    first.wait().unwrap();
    let other = leave.replace("GE_3a5c", "GE_7777");
    assert!(!fake.callback(LEAVE, &other).await);
    assert_eq!(fake.failed_count(), 1);
    let (mut second, base) = serve(&config);
    let (ok, out) = govding(
        &config,
        &["register", "--callback-base", &base, "--tag", LEAVE],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = govding(&config, &["failed"]).await;
    assert!(ok && out.contains("eventCallbackFailedId"), "{out}");
    let (ok, out) = govding(&config, &["failed", "--retry", "all"]).await;
    assert!(ok && out.contains("retried 900"), "{out}");
    assert_eq!(fake.failed_count(), 0);

    let (ok, out) = govding(&config, &["revoke", "--biz-msg-id", "hb-0123"]).await;
    assert!(
        ok && out.contains("msgApp hookbridge_test (derived from app_key)"),
        "{out}"
    );
    let revoke = fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/message/revoke")
        .unwrap();
    assert_eq!(revoke.param("bizMsgId"), Some("hb-0123"));
    assert_eq!(revoke.param("msgType"), Some("workNotification"));
    second.kill().unwrap();
    second.wait().unwrap();
}

/// A stored 浙政钉 delivery is recalled with `deliveries --table T recall`, the same store
/// options as every operator command (it once needed TABLE_NAME): msgType/msgApp come from the
/// receipts the gateway sent about it, and the delivery is `recalled` after.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_a_stored_delivery_with_what_its_receipts_said() {
    use hookbridge::event::{Action, Delivery, Event, Status};
    use hookbridge::store::{EventStore, HistoryStore};

    let fake = FakeGovDing::start().await;
    let config = config_file(&fake);
    let store = hookbridge_tests::dynamo_store().await;
    let event = Event {
        source: "hap".into(),
        key: "m-revoke".into(),
        kind: "mention".into(),
        received_at: 0,
        payload: serde_json::json!({}),
        raw: String::new(),
    };
    let mut d = Delivery::new(
        &event.pk(),
        "govding",
        0,
        Action::Send,
        vec!["10001".into()],
        serde_json::json!({}),
        0,
    );
    d.status = Status::Sent;
    d.result = Some(serde_json::json!({ "bizMsgId": "hb-stored" }));
    d.receipts = vec![
        serde_json::json!({ "status": "read", "msgType": "workNotification", "msgApp": "zjzwfw" }),
    ];
    store.insert(&event, &[d.clone()]).await.unwrap();

    let bin = env!("CARGO_BIN_EXE_hookbridge");
    let key = format!("{}/{}", d.pk, d.sk);
    let (table, endpoint) = (
        store.table().to_owned(),
        hookbridge_tests::dynamodb_endpoint(),
    );
    let (old_key, old_config) = (key.clone(), config.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args([
                "deliveries",
                "--table",
                &table,
                "--config",
                &config,
                "recall",
                &key,
            ])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("AWS_REGION", "cn-north-1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let revoke = fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/message/revoke")
        .unwrap();
    assert_eq!(revoke.param("msgApp"), Some("zjzwfw"));
    let recalled = store.delivery(&d.key()).await.unwrap().unwrap();
    assert_eq!(recalled.status, Status::Recalled);

    // `govding revoke --delivery` says where a stored delivery is recalled.
    let out = Command::new(bin)
        .args([
            "govding",
            "--config",
            &old_config,
            "revoke",
            "--delivery",
            &old_key,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && text.contains("hookbridge deliveries --table"),
        "{text}"
    );
}
