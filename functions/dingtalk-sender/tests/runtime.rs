//! This binary, run as Lambda runs it, against DynamoDB Local and the fake DingTalk.
use std::collections::BTreeMap;
use std::sync::Arc;

use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::fake_secrets::FakeSecrets;
use hookbridge_tests::{
    HAP_TOKEN, app_on, config, dynamo_store, emf, events, fixture, ingest, lambda_env, request,
    run_stream, sent_to_be_checked,
};
use serde_json::json;

#[tokio::test]
async fn sends_the_pending_deliveries_of_a_stream_batch() {
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, ""), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    assert_eq!(
        ingress
            .ingress
            .handle(req, hookbridge::event::now_ms())
            .await
            .status,
        200
    );
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let batch = events::stream_batch(
        &table,
        &[
            ("INSERT", pk, "DLV#dingtalk#000"),
            ("INSERT", pk, "DLV#dingtalk#001"),
        ],
    )
    .await;
    // Behind the meter: what the function writes.
    let meter = hookbridge_tests::meter::Meter::start(&hookbridge_tests::dynamodb_endpoint()).await;
    let mut env = lambda_env(&table, Some(&fake.url), "");
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", meter.url.clone()));
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, batch).await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    assert_eq!(fake.count("asyncsend_v2"), 2);
    // Both calls counted against the month's quota in one write, at the batch's end.
    let writes = meter.consumed().writes;
    assert_eq!(writes["UpdateItem QUOTA"].0, 1, "{writes:?}");
    let sent = store.deliveries_of(pk).await.unwrap();
    assert!(
        sent.iter()
            .all(|d| d.status == hookbridge::event::Status::Sent),
        "{sent:?}"
    );
    // The invocation's metrics, one EMF line each.
    let dingtalk = vec![("Connector".to_owned(), "dingtalk".to_owned())];
    assert_eq!(
        emf(&logs, "Delivered"),
        [(json!(2.0), dingtalk.clone())],
        "{logs}"
    );
    let latency = emf(&logs, "SendLatency");
    assert_eq!(latency.len(), 1, "{logs}");
    assert_eq!(latency[0].0.as_array().map(Vec::len), Some(2), "{logs}");
    assert_eq!(latency[0].1, dingtalk);
    let app = vec![(
        "App".to_owned(),
        format!("dingtalk#{}", hookbridge_tests::fake_dingtalk::APP_KEY),
    )];
    assert_eq!(
        emf(&logs, "ApiCalls"),
        [(json!(2.0), app.clone())],
        "{logs}"
    );
    // The quota share is also published without dimensions, for the stack's alarm.
    let quota = emf(&logs, "DingTalkQuotaUsedPercent");
    assert_eq!(quota.len(), 1, "{logs}");
    assert_eq!(quota[0].1, app);
    assert!(logs.contains(r#""Dimensions":[["App"],[]]"#), "{logs}");
}

/// The DingTalk AppSecret comes from Secrets Manager, as in the SAM stack.
#[tokio::test]
async fn reads_the_app_secret_from_secrets_manager() {
    let arn = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:hookbridge-dt-AbCdEf";
    let secrets = FakeSecrets::start(&[(arn, r#"{"app_secret":"fake-secret"}"#)]).await;
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, ""), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-mention.json"),
        Some(HAP_TOKEN),
    );
    ingress
        .ingress
        .handle(req, hookbridge::event::now_ms())
        .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    let batch = events::stream_batch(&table, &[("INSERT", pk, "DLV#dingtalk#000")]).await;
    let mut env = lambda_env(&table, Some(&fake.url), "");
    for (k, v) in env.iter_mut() {
        if *k == "HOOKBRIDGE_CONFIG" {
            *v = v.replace(
                "plain:fake-secret",
                &format!("secretsmanager:{arn}#app_secret"),
            );
        }
    }
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.url.clone()));
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, batch).await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    assert_eq!(*secrets.requested.lock().unwrap(), [arn]);
    assert_eq!(
        fake.count("/gettoken"),
        1,
        "the secret from Secrets Manager was accepted"
    );
    assert_eq!(fake.count("asyncsend_v2"), 1);
    assert!(
        !logs.contains("fake-secret"),
        "the secret must not be logged"
    );
}

/// 96 deliveries (two bursts of 48 people) sent by `processes` sender processes at once, each
/// with `connectors.dingtalk.senders = senders`, against the fake DingTalk, which answers 90018
/// above 20 calls in any second. Returns the DingTalk sends and the deliveries by status, and
/// the pacing windows written to the table.
async fn burst(processes: usize, senders: usize) -> (usize, BTreeMap<String, usize>, usize) {
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, ""), Arc::new(store.clone())).await;
    let mut items = vec![];
    for event in ["burst-a", "burst-b"] {
        let users: Vec<String> = (0..48).map(|i| format!("{event}-u{i}")).collect();
        let body = serde_json::json!({
            "messageId": event,
            "message": "请审批",
            "messageTypeV2": 14,
            "appName": "采购管理",
            "redirectUrl": "https://hap.example.com/r",
            "targets": users,
        });
        let req = request("/hap/message", body.to_string(), Some(HAP_TOKEN));
        let answer = ingress
            .ingress
            .handle(req, hookbridge::event::now_ms())
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        for n in 0..48 {
            items.push((format!("EVT#hap#{event}"), format!("DLV#dingtalk#{n:03}")));
        }
    }
    let env = lambda_env(&table, Some(&fake.url), &format!("senders = {senders}"));
    let runs = items.chunks(96 / processes).map(|chunk| {
        let (env, table) = (env.clone(), table.clone());
        let chunk = chunk.to_vec();
        tokio::spawn(async move {
            let refs: Vec<(&str, &str, &str)> = chunk
                .iter()
                .map(|(pk, sk)| ("INSERT", pk.as_str(), sk.as_str()))
                .collect();
            let batch = events::stream_batch(&table, &refs).await;
            invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, batch).await
        })
    });
    for run in runs.collect::<Vec<_>>() {
        let (answer, logs) = run.await.unwrap();
        assert_eq!(
            answer,
            Answer::Response(serde_json::json!({"batchItemFailures": []})),
            "{logs}"
        );
    }
    let sends = fake.count("asyncsend_v2");
    assert_eq!(
        sends,
        fake.tasks().len(),
        "every send DingTalk received was accepted: none was answered 90018"
    );
    let mut statuses = BTreeMap::new();
    for event in ["burst-a", "burst-b"] {
        for d in store
            .deliveries_of(&format!("EVT#hap#{event}"))
            .await
            .unwrap()
        {
            *statuses.entry(d.status.as_str().to_owned()).or_insert(0) += 1;
        }
    }
    let windows = hookbridge_tests::dynamo_client(&hookbridge_tests::dynamodb_endpoint())
        .scan()
        .table_name(&table)
        .filter_expression("begins_with(pk, :rate)")
        .expression_attribute_values(
            ":rate",
            hookbridge::store::dynamodb::sdk::types::AttributeValue::S("RATE#".into()),
        )
        .send()
        .await
        .unwrap()
        .count() as usize;
    (sends, statuses, windows)
}

/// Four sender processes at once, each pacing itself at DingTalk's 20 calls a second, would
/// send 80 a second; with `senders = 4` the fleet-wide windows in the table keep them together
/// under 20, so the fake DingTalk never says too fast.
#[tokio::test(flavor = "multi_thread")]
async fn four_senders_together_stay_under_dingtalks_20_calls_a_second() {
    let (sends, statuses, windows) = burst(4, 4).await;
    let sent = statuses.get("sent").copied().unwrap_or(0);
    assert_eq!(sent, sends, "{statuses:?}");
    assert!(sent >= 48, "most went out at once: {statuses:?}");
    assert_eq!(
        statuses.values().sum::<usize>(),
        96,
        "the rest is held back, parked for later: {statuses:?}"
    );
    assert!(windows > 0, "the windows are counted in the table");
}

/// The stack's sender runs one instance at a time (`senders = 1`, the default): its own window
/// keeps it under 20 calls in any second at full speed, and no pacing window is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_sender_keeps_to_20_calls_a_second_without_writing_windows() {
    let (sends, statuses, windows) = burst(1, 1).await;
    assert_eq!(statuses.get("sent").copied(), Some(sends), "{statuses:?}");
    assert!(sends >= 40, "it went at full speed: {statuses:?}");
    assert_eq!(windows, 0, "no window is written");
}

/// The log of a send that uses up a monthly quota of 1, with `HOOKBRIDGE_METRICS` at `metrics`
/// (unset: the stack's default, `essential`).
async fn quota_used_up(metrics: Option<&str>) -> String {
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    ingest(
        &store,
        config(None, ""),
        "/hap/message",
        "hap-message-mention.json",
    )
    .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    let items = [("INSERT", pk, "DLV#dingtalk#000")];
    let mut env = lambda_env(&table, Some(&fake.url), "monthly_quota = 1");
    env.retain(|(k, _)| *k != "HOOKBRIDGE_METRICS");
    env.extend(metrics.map(|m| ("HOOKBRIDGE_METRICS", m.to_owned())));
    run_stream(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, &table, &items).await
}

/// The share of the monthly quota used is a CloudWatch metric (EMF on the function's log), not
/// only a log line at its marks: what the stack's alarm watches.
#[tokio::test]
async fn the_quota_mark_is_an_emf_metric() {
    let logs = quota_used_up(Some("full")).await;
    let app = vec![("App".to_owned(), "dingtalk#ding-fake-key".to_owned())];
    assert_eq!(
        emf(&logs, "DingTalkQuotaUsedPercent"),
        [(json!(100.0), app)],
        "{logs}"
    );
}

/// With the stack's default `Monitoring=essential`, only what an alarm watches is published,
/// as one series for the whole deployment: the quota's share, and no per-connector counts.
#[tokio::test]
async fn essential_monitoring_publishes_the_quota_share_alone() {
    let logs = quota_used_up(None).await;
    assert_eq!(
        emf(&logs, "DingTalkQuotaUsedPercent"),
        [(json!(100.0), vec![])],
        "{logs}"
    );
    for unwatched in ["Delivered", "SendLatency", "ApiCalls"] {
        assert!(emf(&logs, unwatched).is_empty(), "{unwatched}: {logs}");
    }
}

/// `hookbridge check --online --from-stack` invokes the function directly with a preflight: it
/// answers its connector's checks, asked from where the function runs, so an address DingTalk
/// does not list is named as the function's own.
#[tokio::test]
async fn answers_a_preflight_from_where_it_runs() {
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let env = lambda_env(store.table(), Some(&fake.url), "");
    let ask = json!({ "preflight": { "send_test": false, "max_users": 5 } });
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, ask.clone()).await;
    let Answer::Response(v) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    let checks = v["checks"].as_array().expect("checks");
    assert!(
        checks.iter().all(|c| c["part"] == "dingtalk"),
        "only its own connector: {v}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["verdict"] == "pass"
                && c["text"].as_str().unwrap().starts_with("gettoken works")),
        "{v}"
    );
    fake.allowlist.only(&["127.0.0.2"]);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, ask).await;
    let Answer::Response(v) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(v["checks"][0]["verdict"], "fail", "{v}");
    assert!(
        v["checks"][0]["text"]
            .as_str()
            .unwrap()
            .contains("came from 127.0.0.1"),
        "{v}"
    );
}

/// The sweeper's hand-off (`{"follow_up": [keys]}`, invoked asynchronously): each send due to
/// be checked is asked after with `getsendresult` and its outcome recorded; one not due yet, or
/// handed on twice, is left as it is.
#[tokio::test]
async fn checks_the_follow_ups_the_sweeper_hands_on() {
    use hookbridge::event::Status;
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let extra = "follow_up = \"failures\"\nfollow_up_delay_secs = 0\n";
    let (_, keys) = sent_to_be_checked(&store, &fake.url, extra).await;
    let payload = json!({ "follow_up": keys });
    let env = lambda_env(store.table(), Some(&fake.url), extra);
    for checked in [2, 0] {
        let (answer, logs) =
            invoke(env!("CARGO_BIN_EXE_dingtalk-sender"), &env, payload.clone()).await;
        assert_eq!(
            answer,
            Answer::Response(json!({ "checked": checked })),
            "{logs}"
        );
    }
    assert_eq!(fake.count("getsendresult"), 2, "each send asked after once");
    for key in &keys {
        let d = store.delivery(key).await.unwrap().unwrap();
        assert_eq!(d.status, Status::Sent, "{key}");
    }
}
