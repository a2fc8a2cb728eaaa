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
    let client = hookbridge_tests::http_client();

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
    let client = hookbridge_tests::http_client();
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

#[tokio::test]
async fn a_dms_approval_reaches_dingtalk_and_a_zentao_group() {
    use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, GROUP, KEY};
    let dingtalk = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    let extra = format!(
        r#"
[sources.dms]
signature_key = "plain:dms-secret"

[connectors.zentao.ops]
base_url = "{}"
code = "{CODE}"
key = "plain:{KEY}"

[[routes]]
source = "dms"
connector = "dingtalk"

[[routes]]
source = "dms"
connector = "zentao"
group = "{GROUP}"

[recipients.dingtalk.map]
"1673826650168842" = "lisi_ding"
"#,
        zentao.url
    );
    let local = Local::start(config(Some(&dingtalk.url), &extra))
        .await
        .unwrap();
    let base = format!("http://{}", local.addr);
    let client = hookbridge_tests::http_client();
    let resp = client
        .post(format!("{base}/dms"))
        .header("DMS-Event", "Message Hook")
        .body(fixture("dms-approval-pending.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"root":"","success":true}"#);
    let all = settled(&client, &base, 2).await;
    assert!(all.iter().all(|d| d.status == Status::Sent), "{all:?}");
    assert_eq!(dingtalk.tasks()[0].userids, ["lisi_ding"]);
    let chat = zentao.calls("sendChatMessage");
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].body["gid"], GROUP);
    let content = chat[0].body["content"].as_str().unwrap();
    assert!(
        content.contains("任务：订单表历史数据修复（4829103）\n提交人：张三"),
        "{content}"
    );
}
