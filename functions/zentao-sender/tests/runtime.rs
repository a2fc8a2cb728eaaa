//! This binary, run as Lambda runs it, against DynamoDB Local and the fake ZenTao.
use std::sync::Arc;

use hookbridge::event::{Status, now_ms};
use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, KEY};
use hookbridge_tests::{
    HAP_TOKEN, app_on, config, dynamo_store, lambda_env, request, run_stream, sender_takes_its_own,
    statuses,
};

#[tokio::test]
async fn sends_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeZenTao::start().await;
    let zentao = format!(
        "[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\n",
        fake.url
    );
    let binary = env!("CARGO_BIN_EXE_zentao-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &zentao, "zentao").await;
    assert_eq!(fake.calls("sendNotification").len(), 1, "sent once: {logs}");
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("zentao".to_owned(), Status::Sent)
        ]
    );
}

/// `token_mode = "time"`: ZenTao takes one call a second per entry, each with a later time than
/// the last (`calledTime`). 50 notifications at once from four sender processes take their
/// seconds from one mark in the table: all 50 are sent, each once, none refused as a replay,
/// none dead; those that found the next seconds taken were parked and sent after a sweep.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_notifications_from_four_senders_with_time_tokens_all_arrive_once() {
    let fake = FakeZenTao::start().await;
    let zentao = format!(
        "[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n\
         token_mode = \"time\"\n[[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\n",
        fake.url
    );
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, &zentao), Arc::new(store.clone())).await;
    let mut pks = vec![];
    for i in 0..50 {
        let body = serde_json::json!({
            "messageId": format!("time-{i}"), "messageTypeV2": 11, "appName": "项目",
            "message": format!("第 {i} 条"), "targets": ["zhangsan"],
        });
        let req = request("/hap/message", body.to_string(), Some(HAP_TOKEN));
        assert_eq!(ingress.ingress.handle(req, now_ms()).await.status, 200);
        pks.push(format!("EVT#hap#time-{i}"));
    }
    let env = lambda_env(&table, None, &zentao);
    let started = std::time::Instant::now();
    let mut rounds = 0;
    loop {
        let mut pending = vec![];
        let mut sent = 0;
        for pk in &pks {
            for d in store.deliveries_of(pk).await.unwrap() {
                match d.status {
                    Status::Pending if d.connector == "zentao" => pending.push((pk.clone(), d.sk)),
                    Status::Sent => sent += 1,
                    Status::Retrying | Status::Pending => {}
                    other => panic!("{pk}: {other:?} {:?}", d.last_error),
                }
            }
        }
        if sent == 50 || started.elapsed() > std::time::Duration::from_secs(240) {
            break;
        }
        rounds += 1;
        let chunk = pending.len().div_ceil(4).max(1);
        let runs: Vec<_> = pending
            .chunks(chunk)
            .map(|part| {
                let (env, table, part) = (env.clone(), table.clone(), part.to_vec());
                tokio::spawn(async move {
                    let items: Vec<(&str, &str, &str)> = part
                        .iter()
                        .map(|(pk, sk)| ("MODIFY", pk.as_str(), sk.as_str()))
                        .collect();
                    run_stream(env!("CARGO_BIN_EXE_zentao-sender"), &env, &table, &items).await
                })
            })
            .collect();
        for run in runs {
            run.await.unwrap();
        }
        // The retry sweeper: parked deliveries back to pending.
        hookbridge::delivery::sweep(&store, now_ms() + 5_000, 1_000, None)
            .await
            .unwrap();
    }
    let calls = fake.calls("sendNotification");
    assert_eq!(
        calls.len(),
        50,
        "each notification once, after {rounds} rounds"
    );
    assert_eq!(fake.stale_times(), 0, "no second was used twice");
    for pk in &pks {
        let all = statuses(&store, pk).await;
        assert!(
            all.contains(&("zentao".to_owned(), Status::Sent)),
            "{pk}: {all:?}"
        );
    }
    let mut contents: Vec<&str> = calls
        .iter()
        .map(|c| c.body["content"].as_str().unwrap())
        .collect();
    contents.sort_unstable();
    contents.dedup();
    assert_eq!(contents.len(), 50, "50 different notifications");
    println!(
        "50 notifications, 4 senders: {rounds} rounds, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
