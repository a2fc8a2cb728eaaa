//! The ZenTao connector through the pipeline against the fake ZenTao, which checks every token
//! the way ZenTao does.

use hookbridge::event::Status;
use hookbridge_tests::fake_zentao::{CODE, EMPTY_GROUP, FakeZenTao, GROUP, KEY};
use hookbridge_tests::{Harness, config, fixture};
use serde_json::json;

/// HAP → ZenTao (and DMS → ZenTao) with `route` lines added to the ZenTao route.
fn zentao(url: &str, instance: &str, route: &str) -> String {
    format!(
        r#"
[connectors.zentao.main]
base_url = "{url}"
code = "{CODE}"
key = "plain:{KEY}"
sender = {{ id = "hookbridge", name = "HAP 通知", avatar = "https://hookbridge.example.com/a.png" }}
{instance}

[[routes]]
source = "hap"
connector = "zentao"
{route}

[sources.dms]

[[routes]]
source = "dms"
connector = "zentao"
{route}

[recipients.zentao.map]
manager4220 = "zhangsan"
"0147282552401293909" = "lisi"
"1673826650168842" = "lisi"
"#
    )
}

/// The status of the ZenTao delivery of one event (the shared config also routes HAP to a
/// dry-run DingTalk).
async fn zentao_status(h: &Harness, event: &str) -> Status {
    let all = h.deliveries(event).await;
    all.iter()
        .find(|d| d.connector == "zentao")
        .map(|d| d.status)
        .expect("a ZenTao delivery")
}

const MENTION: &str = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
const SYSTEM: &str = "EVT#hap#1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

async fn harness(fake: &FakeZenTao, instance: &str, route: &str) -> Harness {
    Harness::new(config(None, &zentao(&fake.url, instance, route))).await
}

#[tokio::test]
async fn a_todo_is_a_notification_to_mapped_accounts() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "", "").await;
    assert_eq!(
        h.post("/hap/message", &fixture("hap-message-todo.json"))
            .await
            .status,
        200
    );
    let statuses = h.drain().await;
    assert!(statuses.contains(&Status::Sent), "{statuses:?}");
    let calls = fake.calls("sendNotification");
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_eq!(body["users"], json!(["zhangsan", "lisi"]));
    assert_eq!(body["title"], "待办｜采购管理");
    assert_eq!(body["contentType"], "plain");
    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .ends_with("#8d3e6f\n附件 2 个：报价单截图.png、采购合同 v2.pdf"),
        "{body}"
    );
    assert_eq!(body["actions"][0]["label"], "去处理");
    assert_eq!(body["sender"]["name"], "HAP 通知");
    assert_eq!(body["sender"]["displayName"], "HAP 通知");
    assert_eq!(calls[0].entry, "x.php");
    // Finishing the to-do changes nothing in ZenTao, which has no update API.
    h.post("/hap/todo", &fixture("hap-finish-todo.json")).await;
    h.drain().await;
    assert_eq!(fake.calls("sendNotification").len(), 1);
    assert_eq!(
        h.calls_counted("zentao#main", 1).await,
        1,
        "hookbridge status counts it"
    );
}

#[tokio::test]
async fn users_by_id_are_numbers_and_non_numeric_ids_are_reported() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(
        &fake,
        "users_by = \"id\"\nentry = \"api.php\"",
        "users = [\"3\", \"4\", \"wangwu\"]",
    )
    .await;
    h.post("/hap/message", &fixture("hap-message-mention.json"))
        .await;
    h.drain().await;
    let calls = fake.calls("sendNotification");
    assert_eq!(calls[0].body["users"], json!([3, 4]));
    assert_eq!(calls[0].entry, "api.php");
    let report = h
        .app
        .store
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.status == Status::Skipped)
        .unwrap();
    assert!(report.last_error.unwrap().contains("wangwu"));
}

#[tokio::test]
async fn a_group_route_is_a_chat_message() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "", &format!("group = \"{GROUP}\"")).await;
    h.post("/dms", &fixture("dms-approval-pending.json")).await;
    assert_eq!(h.drain().await, [Status::Sent]);
    let calls = fake.calls("sendChatMessage");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["gid"], GROUP);
    assert!(calls[0].body.get("users").is_none());
    assert_eq!(calls[0].body["title"], "【DMS】数据变更待审批");
    assert_eq!(
        calls[0].reached,
        ["zhangsan", "lisi"],
        "the group's members"
    );
    // The group was checked before its first message, and not again by this process.
    h.post("/hap/message", &fixture("hap-message-system.json"))
        .await;
    h.drain().await;
    assert_eq!(zentao_status(&h, SYSTEM).await, Status::Sent);
    assert_eq!(fake.calls("sendChatMessage").len(), 2);
    assert_eq!(fake.calls("getGroupChats").len(), 1);
    assert_eq!(fake.calls("getChatUsers").len(), 1);
}

/// ZenTao sends a chat message for a gid it does not know, or for a group nobody is left in,
/// to every active user and answers success: such a route is dead with the reason, and nothing
/// is sent.
#[tokio::test]
async fn an_unknown_or_empty_group_is_never_sent_to() {
    for gid in ["30683aea-typo", EMPTY_GROUP] {
        let fake = FakeZenTao::start().await;
        let mut h = harness(&fake, "", &format!("group = \"{gid}\"")).await;
        h.post("/dms", &fixture("dms-approval-pending.json")).await;
        assert_eq!(h.drain().await, [Status::Dead], "{gid}");
        let d = h.app.store.recent(10).await.unwrap();
        let reason = d[0].last_error.clone().unwrap();
        assert!(
            reason.contains(gid) && reason.contains("every active user"),
            "{reason}"
        );
        assert!(fake.calls("sendChatMessage").is_empty(), "{gid}");
    }
}

/// The fake sends as ZenTao does, so a connector that skipped the check would show here as a
/// message to everyone; and accounts ZenTao does not know are answered success, reaching nobody.
#[tokio::test]
async fn the_fake_reaches_everyone_for_an_unknown_group_and_nobody_for_unknown_accounts() {
    let fake = FakeZenTao::start().await;
    let http = hookbridge_tests::http_client();
    let url = |f: &str| {
        let query =
            hookbridge::connectors::zentao::build_query(&[("m", "im"), ("f", f), ("code", CODE)]);
        let token = hookbridge::connectors::zentao::token(&query, KEY);
        format!("{}/x.php?{query}&token={token}", fake.url)
    };
    let sender = json!({"id": "t", "name": "t", "avatar": ""});
    for (method, body) in [
        (
            "sendChatMessage",
            json!({"gid": "nope", "title": "t", "sender": sender}),
        ),
        (
            "sendNotification",
            json!({"users": ["nobody"], "title": "t", "sender": sender}),
        ),
    ] {
        let answer: serde_json::Value = http
            .post(url(method))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"], "success", "{method}");
    }
    let calls = fake.all_calls();
    assert_eq!(calls[0].reached, ["admin", "zhangsan", "lisi"]);
    assert!(calls[1].reached.is_empty());
}

/// `token_mode = "time"`: ZenTao takes one call a second per entry, each later than the last.
/// A burst takes its seconds one by one; none is refused as a replay, none is lost.
#[tokio::test]
async fn time_tokens_send_a_burst_one_second_apart_and_lose_nothing() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "token_mode = \"time\"", "").await;
    let events: Vec<String> = (0..4).map(|i| format!("EVT#hap#burst{i}")).collect();
    for i in 0..4 {
        let body = json!({"messageId": format!("burst{i}"), "messageTypeV2": 11, "appName": "项目", "message": "请处理", "targets": ["manager4220"]});
        assert_eq!(h.post("/hap/message", &body.to_string()).await.status, 200);
    }
    h.drain().await;
    for _ in 0..20 {
        let mut done = 0;
        for e in &events {
            if zentao_status(&h, e).await == Status::Sent {
                done += 1;
            }
        }
        if done == events.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        h.sweep_after(5).await;
    }
    for e in &events {
        let d = h.deliveries(e).await;
        let z = d.iter().find(|d| d.connector == "zentao").unwrap();
        assert_eq!((z.status, z.attempts), (Status::Sent, 1), "{z:?}");
    }
    let calls = fake.calls("sendNotification");
    assert_eq!(calls.len(), 4, "each once");
    assert_eq!(fake.stale_times(), 0, "no time was used twice");
    let times: Vec<i64> = calls
        .iter()
        .map(|c| {
            let t = c
                .query
                .split('&')
                .find_map(|p| p.strip_prefix("time="))
                .unwrap();
            t.parse().unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

/// A 405 (`CALLED_TIME`: another client of the entry got a later second in first) is a throttle:
/// the notice waits without spending an attempt, then goes out.
#[tokio::test]
async fn a_time_token_refused_as_used_spends_no_attempt() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "token_mode = \"time\"", "").await;
    fake.inject(200, r#"{"errcode":405,"errmsg":"Token已失效"}"#, 2);
    h.post("/hap/message", &fixture("hap-message-system.json"))
        .await;
    h.drain().await;
    assert_eq!(zentao_status(&h, SYSTEM).await, Status::Retrying);
    for _ in 0..5 {
        if zentao_status(&h, SYSTEM).await == Status::Sent {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        h.sweep_after(5).await;
    }
    let d = h.deliveries(SYSTEM).await;
    let z = d.iter().find(|d| d.connector == "zentao").unwrap();
    assert_eq!((z.status, z.attempts), (Status::Sent, 1), "{z:?}");
}

#[tokio::test]
async fn a_wrong_key_or_a_denied_ip_is_dead_with_what_to_fix() {
    for (setup, want) in [("key", "密钥"), ("ip", "egress IP")] {
        let fake = FakeZenTao::start().await;
        let mut cfg = config(None, &zentao(&fake.url, "", ""));
        if setup == "key" {
            let main = cfg
                .connectors
                .zentao
                .as_mut()
                .unwrap()
                .get_mut("main")
                .unwrap();
            main.key = Some(String::from("plain:0000").try_into().unwrap());
        } else {
            fake.allowlist.only(&["127.0.0.2"]);
        }
        let mut h = Harness::new(cfg).await;
        h.post("/hap/message", &fixture("hap-message-mention.json"))
            .await;
        h.drain().await;
        assert_eq!(zentao_status(&h, MENTION).await, Status::Dead, "{setup}");
        let all = h.deliveries(MENTION).await;
        let dead = all.iter().find(|d| d.connector == "zentao").unwrap();
        assert!(
            dead.last_error.as_deref().unwrap().contains(want),
            "{setup}: {dead:?}"
        );
    }
}

#[tokio::test]
async fn refusals_are_dead_and_server_errors_are_retried() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "", "").await;
    fake.inject(
        200,
        r#"{"result":"fail","message":"请提供通知信息的标题。"}"#,
        1,
    );
    h.post("/hap/message", &fixture("hap-message-mention.json"))
        .await;
    h.drain().await;
    assert_eq!(zentao_status(&h, MENTION).await, Status::Dead);
    fake.inject(502, "<html>Bad Gateway</html>", 1);
    h.post("/hap/message", &fixture("hap-message-system.json"))
        .await;
    h.drain().await;
    assert_eq!(zentao_status(&h, SYSTEM).await, Status::Retrying);
    assert_eq!(h.sweep_after(3600).await, [Status::Sent]);
    assert_eq!(
        fake.calls("sendNotification").len(),
        1,
        "the fake records only calls that got through"
    );
}

/// HTTP 429 and 503 (ZenTao or the proxy in front of it overloaded) are back-pressure: the
/// notice waits without spending an attempt, then goes out.
#[tokio::test]
async fn an_overloaded_zentao_spends_no_attempt() {
    for status in [429, 503] {
        let fake = FakeZenTao::start().await;
        let mut h = harness(&fake, "", "").await;
        fake.inject(status, "", 3);
        h.post("/hap/message", &fixture("hap-message-system.json"))
            .await;
        h.drain().await;
        for _ in 0..5 {
            if zentao_status(&h, SYSTEM).await == Status::Sent {
                break;
            }
            h.sweep_after(3600).await;
        }
        let d = h.deliveries(SYSTEM).await;
        let z = d.iter().find(|d| d.connector == "zentao").unwrap();
        assert_eq!((z.status, z.attempts), (Status::Sent, 1), "{status}: {z:?}");
        assert_eq!(fake.calls("sendNotification").len(), 1);
    }
}

#[tokio::test]
async fn an_instance_without_a_key_is_a_dry_run() {
    let fake = FakeZenTao::start().await;
    let mut cfg = config(None, &zentao(&fake.url, "", ""));
    cfg.connectors
        .zentao
        .as_mut()
        .unwrap()
        .get_mut("main")
        .unwrap()
        .key = None;
    let mut h = Harness::new(cfg).await;
    h.post("/hap/message", &fixture("hap-message-mention.json"))
        .await;
    assert!(h.drain().await.iter().all(|s| *s == Status::DryRun));
    let d = h
        .app
        .store
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.connector == "zentao")
        .unwrap();
    let request = &d.result.unwrap()["requests"][0];
    assert_eq!(request["path"], "?m=im&f=sendNotification");
    assert_eq!(
        request["body"]["users"],
        json!(["wangwu_2231"]),
        "unmapped HAP ids pass through"
    );
    assert!(fake.calls("sendNotification").is_empty());
}

#[tokio::test]
async fn one_event_can_go_to_several_targets_but_never_twice_to_one() {
    let fake = FakeZenTao::start().await;
    // zentao() already routes DMS to mapped users; add a group route, and the same group again.
    let more = format!(
        "\n[[routes]]\nsource = \"dms\"\nconnector = \"zentao\"\ngroup = \"{GROUP}\"\n\
         [[routes]]\nsource = \"dms\"\nconnector = \"zentao\"\ngroup = \"{GROUP}\"\n"
    );
    let text = hookbridge_tests::config_text(None, &(zentao(&fake.url, "", "") + &more));
    let mut h = Harness::new(hookbridge::config::Config::from_toml(&text).unwrap()).await;
    h.post("/dms", &fixture("dms-approval-pending.json")).await;
    assert_eq!(h.drain().await, [Status::Sent, Status::Sent]);
    let sks: Vec<String> = h
        .app
        .store
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.sk)
        .collect();
    assert!(
        sks.contains(&"DLV#zentao#000".to_owned()) && sks.contains(&"DLV#zentao#001".to_owned()),
        "{sks:?}"
    );
    assert_eq!(
        fake.calls("sendNotification")[0].body["users"],
        json!(["lisi"])
    );
    assert_eq!(
        fake.calls("sendChatMessage").len(),
        1,
        "the repeated group route adds nothing"
    );
}

#[tokio::test]
async fn markdown_content_is_sent_as_text_with_the_values_escaped() {
    let fake = FakeZenTao::start().await;
    let mut h = harness(&fake, "content = \"markdown\"", "").await;
    let body = json!({"messageId": "md2", "messageTypeV2": 11, "appName": "项目", "message": "**不加粗** #1", "targets": ["manager4220"]});
    h.post("/hap/message", &body.to_string()).await;
    h.drain().await;
    let sent = &fake.calls("sendNotification")[0].body;
    assert_eq!(sent["contentType"], "text");
    assert_eq!(sent["content"], r"\*\*不加粗\*\* \#1 #md2");
}
