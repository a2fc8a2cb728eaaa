//! HAP webhooks through the ingress pipeline: every fixture, bad input of every kind, auth,
//! idempotency, and a store that is down.

use std::sync::Arc;

use hookbridge::connectors::dingtalk::AsyncSend;
use hookbridge::event::{Action, now_ms};
use hookbridge::store::Store;
use hookbridge::store::memory::MemoryStore;
use hookbridge_tests::{
    HAP_TOKEN, Harness, app_on, config, dynamo_store, fixture, request, unreachable_store,
};
use serde_json::{Value, json};

fn body(resp: &hookbridge::ingress::Response) -> Value {
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.body))
}

async fn dry_run() -> Harness {
    Harness::new(config(None, "")).await
}

#[tokio::test]
async fn every_fixture_is_accepted_with_the_expected_deliveries() {
    let h = dry_run().await;
    for (path, name, event, deliveries) in [
        (
            "/hap/message",
            "hap-message-todo.json",
            "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d",
            2,
        ),
        (
            "/hap/message",
            "hap-message-system.json",
            "EVT#hap#1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            1,
        ),
        (
            "/hap/message",
            "hap-message-mention.json",
            "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a",
            1,
        ),
        (
            "/hap/todo",
            "hap-finish-todo.json",
            "EVT#hap#done#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d#manager4220",
            1,
        ),
    ] {
        let resp = h.post(path, &fixture(name)).await;
        assert_eq!(resp.status, 200, "{name}: {}", resp.body);
        assert_eq!(
            body(&resp),
            json!({"success": true, "event": event, "duplicate": false, "deliveries": deliveries}),
            "{name}"
        );
        assert_eq!(h.deliveries(event).await.len(), deliveries, "{name}");
    }
}

#[tokio::test]
async fn the_system_fixture_is_a_notice_because_v2_wins() {
    let h = dry_run().await;
    h.post("/hap/message", &fixture("hap-message-system.json"))
        .await;
    let d = &h
        .deliveries("EVT#hap#1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
        .await[0];
    assert_eq!(
        d.message["msg"]["msgtype"], "markdown",
        "legacy 14 must not make it a to-do"
    );
}

/// Our card for the to-do fixture, in grouped mode, against the team's reference rendering.
#[tokio::test]
async fn the_todo_card_matches_the_reference_asyncsend_body() {
    let h = Harness::new(config(None, "todo_fanout = \"chunk5\"")).await;
    h.post("/hap/message", &fixture("hap-message-todo.json"))
        .await;
    let ds = h
        .deliveries("EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d")
        .await;
    assert_eq!(ds.len(), 1);
    let ours: AsyncSend = serde_json::from_value(ds[0].message.clone()).unwrap();
    let reference: Value = serde_json::from_str(&fixture("dingtalk-asyncsend-oa.json")).unwrap();
    let ours = serde_json::to_value(ours).unwrap();
    for pointer in [
        "/agent_id",
        "/userid_list",
        "/to_all_user",
        "/msg/msgtype",
        "/msg/oa/message_url",
        "/msg/oa/pc_message_url",
        "/msg/oa/head/bgcolor",
        "/msg/oa/head/text",
        "/msg/oa/status_bar/status_bg",
        "/msg/oa/body/file_count",
    ] {
        assert_eq!(
            ours.pointer(pointer),
            reference.pointer(pointer),
            "{pointer}"
        );
    }
    assert_eq!(ours["msg"]["oa"]["status_bar"]["status_value"], "待处理");
    let content = ours["msg"]["oa"]["body"]["content"].as_str().unwrap();
    assert!(content.ends_with("#8d3e6f"), "{content}");
    assert!(serde_json::to_vec(&ours["msg"]).unwrap().len() <= 2048);
}

#[tokio::test]
async fn bad_bodies_get_a_400_that_says_what_to_fix() {
    let h = dry_run().await;
    for (path, bad, want) in [
        ("/hap/message", "", "not valid JSON"),
        ("/hap/message", "not json", "not valid JSON"),
        ("/hap/message", "[]", "must be a JSON object"),
        ("/hap/message", "null", "must be a JSON object, not null"),
        ("/hap/message", "{}", "missing field `messageId`"),
        ("/hap/message", r#"{"messageId":true}"#, "field messageId"),
        (
            "/hap/message",
            r#"{"messageId":"m","targets":7}"#,
            "field targets",
        ),
        (
            "/hap/message",
            r#"{"messageId":"m","attachments":{"a":"b"}}"#,
            "field attachments",
        ),
        (
            "/hap/message",
            r#"{"messageId":"m","appName":["x"]}"#,
            "field appName",
        ),
        (
            "/hap/todo",
            r#"{"userId":"u"}"#,
            "missing field `messageId`",
        ),
        (
            "/hap/todo",
            r#"{"messageId":" "}"#,
            "field messageId: must not be empty",
        ),
    ] {
        let resp = h.post(path, bad).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.body);
        let b = body(&resp);
        assert_eq!(b["success"], false);
        assert!(b["error"].as_str().unwrap().contains(want), "{bad}: {b}");
    }
    let invalid_utf8 = request(
        "/hap/message",
        &b"{\"messageId\":\"\xff\"}"[..],
        Some(HAP_TOKEN),
    );
    let resp = h.app.ingress.handle(invalid_utf8, now_ms()).await;
    assert_eq!(resp.status, 400);
    assert!(
        body(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert!(
        h.app.store.recent(10).await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn every_truncation_of_every_fixture_is_a_clean_400() {
    let h = dry_run().await;
    for (path, name) in [
        ("/hap/message", "hap-message-todo.json"),
        ("/hap/message", "hap-message-mention.json"),
        ("/hap/todo", "hap-finish-todo.json"),
    ] {
        let full = fixture(name).into_bytes();
        for cut in 0..full.len() - 2 {
            let req = request(path, full[..cut].to_vec(), Some(HAP_TOKEN));
            let resp = h.app.ingress.handle(req, now_ms()).await;
            assert_eq!(resp.status, 400, "{name} cut at {cut}: {}", resp.body);
        }
    }
}

/// An id no store can key is refused with the reason (DynamoDB would refuse it on every retry,
/// a 503 forever), and no answer echoes a long id back whole.
#[tokio::test]
async fn an_id_too_long_to_store_is_refused_and_never_echoed() {
    let h = dry_run().await;
    let long = "x".repeat(200_000);
    let resp = h
        .post(
            "/hap/message",
            &json!({"messageId": long, "message": "m", "targets": ["u"]}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert!(
        body(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("at most 1024")
    );
    assert!(resp.body.len() < 300, "{} bytes answered", resp.body.len());
    let longest = "y".repeat(hookbridge::ingress::MAX_EVENT_KEY_BYTES);
    let resp = h
        .post(
            "/hap/message",
            &json!({"messageId": longest, "message": "m", "targets": ["u"]}).to_string(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let event = body(&resp)["event"].as_str().unwrap().to_owned();
    assert!(
        event.len() < 200 && event.contains('…'),
        "cut like a log id: {event}"
    );
}

#[tokio::test]
async fn oversized_bodies_get_a_413_in_haps_format() {
    let h = Harness::new(config(None, "").clone()).await;
    let limit = h.app.config.sources.hap.as_ref().unwrap().max_body_bytes;
    let big =
        json!({"messageId": "big", "message": "x".repeat(limit), "targets": ["u"]}).to_string();
    let resp = h.post("/hap/message", &big).await;
    assert_eq!(resp.status, 413);
    assert!(
        body(&resp)["error"]
            .as_str()
            .unwrap()
            .contains(&format!("the limit is {limit} bytes"))
    );
}

#[tokio::test]
async fn auth_is_checked_first_and_never_leaks() {
    let h = dry_run().await;
    let todo = fixture("hap-message-todo.json");
    for (token, status, want) in [
        (None, 401, "missing header x-hookbridge-token"),
        (Some("wrong"), 401, "does not match"),
        (Some(""), 401, "does not match"),
        (Some("test-hap-token "), 401, "does not match"),
        (Some(HAP_TOKEN), 200, ""),
    ] {
        let resp = h
            .app
            .ingress
            .handle(request("/hap/message", todo.clone(), token), now_ms())
            .await;
        assert_eq!(resp.status, status, "{token:?}: {}", resp.body);
        assert!(
            !resp.body.contains(HAP_TOKEN),
            "the configured token must never be echoed"
        );
        if status == 401 {
            assert!(
                body(&resp)["error"].as_str().unwrap().contains(want),
                "{}",
                resp.body
            );
        }
    }
    let garbage = h
        .app
        .ingress
        .handle(request("/hap/message", "%%%", None), now_ms())
        .await;
    assert_eq!(
        garbage.status, 401,
        "unauthenticated requests are not parsed"
    );
}

#[tokio::test]
async fn wrong_content_type_and_unknown_paths() {
    let h = dry_run().await;
    let mut req = request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    req.headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let resp = h.app.ingress.handle(req, now_ms()).await;
    assert_eq!(resp.status, 415);
    assert!(
        body(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    let resp = h.post("/hap/messages", "{}").await;
    assert_eq!(resp.status, 404);
    assert!(
        body(&resp)["error"]
            .as_str()
            .unwrap()
            .contains("/hap/message")
    );
    // Paths match exactly: no prefix, no suffix, no trailing slash.
    for path in [
        "/prod/hap/message",
        "/hap/message/",
        "/x/hap/message",
        "/hap/message/x",
    ] {
        let resp = h.post(path, &fixture("hap-message-mention.json")).await;
        assert_eq!(resp.status, 404, "{path}");
    }
    assert!(h.app.store.recent(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_without_targets_is_stored_and_acknowledged() {
    let h = dry_run().await;
    let resp = h
        .post("/hap/message", r#"{"messageId":"lonely","targets":[]}"#)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(body(&resp)["deliveries"], 0);
}

async fn the_same_message_twice_is_one_event(store: Arc<dyn Store>) {
    let app = app_on(config(None, ""), store.clone()).await;
    let post = |name: &str| {
        let app = app.clone();
        let body = fixture(name);
        async move {
            app.ingress
                .handle(request("/hap/message", body, Some(HAP_TOKEN)), now_ms())
                .await
        }
    };
    let first = post("hap-message-todo.json").await;
    assert_eq!(body(&first)["duplicate"], false);
    let second = post("hap-message-todo.json").await;
    assert_eq!(second.status, 200);
    assert_eq!(body(&second)["duplicate"], true);
    assert_eq!(body(&second)["deliveries"], 0);
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    assert_eq!(store.deliveries_of(pk).await.unwrap().len(), 2);
}

async fn concurrent_duplicates_are_one_event(store: Arc<dyn Store>) {
    let app = app_on(config(None, ""), store.clone()).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let app = app.clone();
        set.spawn(async move {
            let req = request(
                "/hap/message",
                fixture("hap-message-todo.json"),
                Some(HAP_TOKEN),
            );
            app.ingress.handle(req, now_ms()).await
        });
    }
    let responses = set.join_all().await;
    assert!(
        responses.iter().all(|r| r.status == 200),
        "{:?}",
        responses.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let created = responses
        .iter()
        .filter(|r| body(r)["duplicate"] == false)
        .count();
    assert_eq!(created, 1);
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    assert_eq!(store.deliveries_of(pk).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_same_message_twice_is_one_event_memory() {
    the_same_message_twice_is_one_event(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn the_same_message_twice_is_one_event_dynamodb() {
    the_same_message_twice_is_one_event(Arc::new(dynamo_store().await)).await;
}

#[tokio::test]
async fn concurrent_duplicates_are_one_event_memory() {
    concurrent_duplicates_are_one_event(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn concurrent_duplicates_are_one_event_dynamodb() {
    concurrent_duplicates_are_one_event(Arc::new(dynamo_store().await)).await;
}

#[tokio::test]
async fn a_repeated_finish_is_one_status_update() {
    let h = dry_run().await;
    for _ in 0..3 {
        assert_eq!(
            h.post("/hap/todo", &fixture("hap-finish-todo.json"))
                .await
                .status,
            200
        );
    }
    let pk = "EVT#hap#done#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d#manager4220";
    let ds = h.deliveries(pk).await;
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].action, Action::own("update_status"));
}

#[tokio::test]
async fn a_store_that_is_down_gets_a_503_and_nothing_is_acknowledged() {
    let app = app_on(config(None, ""), Arc::new(unreachable_store().await)).await;
    for (path, name) in [
        ("/hap/message", "hap-message-todo.json"),
        ("/hap/todo", "hap-finish-todo.json"),
    ] {
        let resp = app
            .ingress
            .handle(request(path, fixture(name), Some(HAP_TOKEN)), now_ms())
            .await;
        assert_eq!(resp.status, 503, "{}", resp.body);
        let b = body(&resp);
        assert_eq!(b["success"], false);
        let error = b["error"].as_str().unwrap();
        assert!(error.contains("please retry (request id "), "{b}");
        // The store's error (SDK debug text, the endpoint) goes to the log, not to the caller.
        for leak in [
            "127.0.0.1",
            "dispatch",
            "Error",
            "storage unavailable",
            "nowhere",
        ] {
            assert!(!error.contains(leak), "{leak}: {b}");
        }
        assert!(error.len() < 100, "{b}");
    }
    // Bad input is still the sender's problem, not a 5xx.
    let resp = app
        .ingress
        .handle(request("/hap/message", "[]", Some(HAP_TOKEN)), now_ms())
        .await;
    assert_eq!(resp.status, 400);
}

/// Which events each route takes: a table of routes × events → the connectors and titles the
/// event's deliveries get.
#[tokio::test]
async fn routes_match_on_source_kind_and_event_fields() {
    let routes = r#"
[sources.hap]
tokens = ["plain:test-hap-token"]

[sources.dms]

[connectors.dingtalk]
agent_id = 1

[connectors.zentao.main]
base_url = "http://127.0.0.1:9"
code = "c"

[[routes]]
source = "hap"
connector = "dingtalk"
when = { appName = ["采购管理", "合同管理"], messageTypeV2 = [14, 16] }

[[routes]]
source = "dms"
connector = "dingtalk"
when = { event = ["待审批", "待審批"] }
template = "approval"

[[routes]]
source = "hap"
connector = "zentao"
kinds = ["mention"]
users = ["admin"]

[templates.approval]
title = "{{ submitterName }} 的{{ module }}工单待您审批"
text = "{{ taskName }}（{{ taskId }}）"

[recipients.dingtalk.map]
"1673826650168842" = "lisi"
"#;
    let h = Harness::new(hookbridge::config::Config::from_toml(routes).unwrap()).await;
    let mut zh_tw: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    zh_tw["messageEvent"]["event"] = json!("待審批");
    zh_tw["signatureMethod"] = json!("None");
    let mut done = zh_tw.clone();
    done["messageEvent"]["event"] = json!("执行成功");
    let mut dms_signed_none: Value =
        serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    dms_signed_none["signatureMethod"] = json!("None");
    for (path, body, want) in [
        (
            "/hap/message",
            fixture("hap-message-todo.json"),
            vec![
                ("dingtalk", "待办｜采购管理"),
                ("dingtalk", "待办｜采购管理"),
            ],
        ),
        (
            "/hap/message",
            fixture("hap-message-system.json"),
            vec![("dingtalk", "系统消息｜合同管理")],
        ),
        (
            "/hap/message",
            fixture("hap-message-mention.json"),
            vec![("zentao", "@提及｜客户管理")],
        ),
        (
            "/dms",
            dms_signed_none.to_string(),
            vec![("dingtalk", "张三 的数据变更工单待您审批")],
        ),
        (
            "/dms",
            zh_tw.to_string(),
            vec![("dingtalk", "张三 的数据变更工单待您审批")],
        ),
        ("/dms", done.to_string(), vec![]),
    ] {
        let before = h.app.store.recent(1000).await.unwrap();
        let resp = h
            .app
            .ingress
            .handle(request(path, body.clone(), Some(HAP_TOKEN)), now_ms())
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let mut added: Vec<_> = h.app.store.recent(1000).await.unwrap();
        added.retain(|d| !before.iter().any(|b| b.key() == d.key()));
        added.sort_by(|a, b| a.sk.cmp(&b.sk));
        let got: Vec<(String, String)> = added
            .iter()
            .map(|d| {
                let title = match d.connector.as_str() {
                    "zentao" => d.message["notice"]["title"].clone(),
                    _ if d.message["msg"]["msgtype"] == "oa" => {
                        d.message["msg"]["oa"]["body"]["title"].clone()
                    }
                    _ => d.message["msg"]["markdown"]["title"].clone(),
                };
                (d.connector.clone(), title.as_str().unwrap_or("").to_owned())
            })
            .collect();
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(c, t)| (c.to_owned(), t.to_owned()))
            .collect();
        assert_eq!(got, want, "{path} {}", &body[..60.min(body.len())]);
    }
    let zentao = h
        .deliveries("EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a")
        .await;
    assert_eq!(
        zentao[0].message["notice"]["users"],
        json!(["admin"]),
        "fixed users"
    );
}

#[tokio::test]
async fn markdown_notices_escape_what_the_source_wrote() {
    let h = dry_run().await;
    let body = json!({"messageId": "md1", "messageTypeV2": 11, "appName": "项目", "message": "# 不是标题 *不加粗* [假链接](http://x)", "targets": ["u1"]});
    h.post("/hap/message", &body.to_string()).await;
    let d = &h.deliveries("EVT#hap#md1").await[0];
    let text = d.message["msg"]["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains(r"\# 不是标题 \*不加粗\* \[假链接\]\(http://x\)"),
        "{text}"
    );
    assert!(
        text.starts_with("#### 系统消息｜项目 #md1"),
        "the template's own Markdown stays: {text}"
    );
}

/// The token header sent twice is refused, however the server presents it: `serve` sees two
/// values (the first one right), API Gateway joins them with a comma.
#[tokio::test]
async fn a_token_header_sent_twice_is_refused_by_serve() {
    let local = hookbridge::local::Local::start(config(None, ""))
        .await
        .unwrap();
    let client = hookbridge_tests::http_client();
    let url = format!("http://{}/hap/message", local.addr);
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .header("X-Hookbridge-Token", HAP_TOKEN)
        .header("X-Hookbridge-Token", "something-else")
        .body(fixture("hap-message-todo.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("sent 2 times"),
        "{answer}"
    );
    assert!(local.app.store.recent(10).await.unwrap().is_empty());
}

/// Ids are their exact text: two 30-digit ids that a float would make equal are two events.
#[tokio::test]
async fn long_numeric_message_ids_stay_distinct() {
    let h = dry_run().await;
    let a = "123456789012345678901234567890";
    let b = "123456789012345678901234567891";
    for id in [a, b] {
        let msg = format!(r#"{{"messageId":{id},"message":"x","targets":[1673826650168842]}}"#);
        let resp = h.post("/hap/message", &msg).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(body(&resp)["duplicate"], false, "{id}");
        assert_eq!(body(&resp)["event"], format!("EVT#hap#{id}"));
    }
    let d = h.deliveries(&format!("EVT#hap#{b}")).await;
    assert_eq!(d[0].recipients, ["1673826650168842"]);
}

#[tokio::test]
async fn bodies_with_a_key_twice_are_refused() {
    let h = dry_run().await;
    for body in [
        r#"{"messageId":"a","messageId":"b","targets":["u"]}"#,
        r#"{"messageId":"a","targets":["u"],"extra":{"x":1,"x":2}}"#,
    ] {
        let resp = h.post("/hap/message", body).await;
        assert_eq!(resp.status, 400, "{body}");
        assert!(resp.body.contains("twice in one object"), "{}", resp.body);
    }
    assert!(h.app.store.recent(10).await.unwrap().is_empty());
}

/// 25,000 targets, 5,000 of them distinct: de-duplicated (in linear time) into 50 notices of
/// 100. An event needing more deliveries than one atomic write holds is refused with a reason,
/// instead of failing on every retry.
#[tokio::test]
async fn huge_target_lists_are_deduplicated_and_bounded() {
    let mut cfg = config(None, "");
    cfg.sources.hap.as_mut().unwrap().max_body_bytes = 1 << 20;
    let h_big = Harness::new(cfg).await;
    let targets: Vec<String> = (0..25_000).map(|i| format!("u{}", i % 5_000)).collect();
    let body = json!({"messageId": "many", "message": "m", "targets": targets}).to_string();
    let resp = h_big.post("/hap/message", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let ds = h_big.deliveries("EVT#hap#many").await;
    assert_eq!(ds.len(), 50);
    let mut all: Vec<&String> = ds.iter().flat_map(|d| &d.recipients).collect();
    assert_eq!(all.len(), 5_000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5_000, "each recipient once");

    let targets: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let body = json!({"messageId": "too-many", "message": "m", "targets": targets}).to_string();
    let resp = h_big.post("/hap/message", &body).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("needs 100 deliveries"), "{}", resp.body);
    assert!(h_big.deliveries("EVT#hap#too-many").await.is_empty());
}
