//! `hookbridge serve`'s wiring (HTTP server, in-memory store, change feed, sender, sweeper) with
//! the fake DingTalk: a HAP to-do and its finish, over real HTTP, and exactly the DingTalk
//! calls that should follow.

use std::time::Duration;

use hookbridge::event::{Delivery, Status};
use hookbridge::local::Local;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{HAP_TOKEN, config, fixture};

async fn post(client: &reqwest::Client, url: String, name: &str) -> serde_json::Value {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("X-Hookbridge-Token", HAP_TOKEN)
        .body(fixture(name))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Polls `GET /deliveries` until every delivery is final (bounded: 10 s).
async fn settled(client: &reqwest::Client, base: &str, expected: usize) -> Vec<Delivery> {
    for _ in 0..200 {
        let list: Vec<Delivery> = client
            .get(format!("{base}/deliveries"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list.len() == expected && list.iter().all(|d| d.status.is_final()) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries did not settle");
}

#[tokio::test]
async fn a_todo_and_its_finish_make_exactly_the_expected_dingtalk_calls() {
    let fake = FakeDingTalk::start().await;
    let local = Local::start(config(Some(&fake.url), "")).await.unwrap();
    let base = format!("http://{}", local.addr);
    let client = reqwest::Client::new();

    post(
        &client,
        format!("{base}/hap/message"),
        "hap-message-todo.json",
    )
    .await;
    let cards = settled(&client, &base, 2).await;
    assert!(cards.iter().all(|d| d.status == Status::Sent));
    post(&client, format!("{base}/hap/todo"), "hap-finish-todo.json").await;
    let all = settled(&client, &base, 3).await;
    assert!(all.iter().all(|d| d.status == Status::Sent), "{all:?}");

    assert_eq!(fake.count("/gettoken"), 1);
    let sends = fake.calls("asyncsend_v2");
    let mut users: Vec<&str> = sends
        .iter()
        .map(|c| c.body["userid_list"].as_str().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, ["0147282552401293909", "manager4220"]);
    let bars = fake.calls("status_bar/update");
    assert_eq!(bars.len(), 1);
    let manager_task = fake
        .tasks()
        .into_iter()
        .find(|t| t.userids == ["manager4220"])
        .unwrap();
    assert_eq!(bars[0].body["task_id"], manager_task.task_id);
    assert_eq!(bars[0].body["status_value"], "已处理");
    assert_eq!(fake.calls("").len(), 4, "nothing else was called");
    assert!(fake.violations().is_empty());
}

#[tokio::test]
async fn dry_run_records_every_request_it_would_have_made() {
    let local = Local::start(config(None, "")).await.unwrap();
    let base = format!("http://{}", local.addr);
    let client = reqwest::Client::new();
    post(
        &client,
        format!("{base}/hap/message"),
        "hap-message-todo.json",
    )
    .await;
    settled(&client, &base, 2).await;
    post(&client, format!("{base}/hap/todo"), "hap-finish-todo.json").await;
    let all = settled(&client, &base, 3).await;
    assert!(all.iter().all(|d| d.status == Status::DryRun), "{all:?}");
    let update = all
        .iter()
        .find(|d| d.sk == "DLV#dingtalk#000" && d.pk.contains("done#"))
        .unwrap();
    let requests = update.result.as_ref().unwrap()["requests"]
        .as_array()
        .unwrap();
    assert_eq!(requests.len(), 1, "only the finishing user's card");
    assert_eq!(
        requests[0]["path"],
        "/topapi/message/corpconversation/status_bar/update"
    );
    assert_eq!(requests[0]["body"]["status_value"], "已处理");
    let card = all
        .iter()
        .find(|d| d.recipients == ["manager4220"] && !d.pk.contains("done#"))
        .unwrap();
    let sent = &card.result.as_ref().unwrap()["requests"][0];
    assert_eq!(
        sent["path"],
        "/topapi/message/corpconversation/asyncsend_v2"
    );
    assert_eq!(sent["body"], card.message, "the full asyncsend_v2 body");
}
