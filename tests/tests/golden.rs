//! Golden outbound requests: what each fixture and scenario makes hookbridge send to DingTalk
//! and ZenTao, byte for byte (method, path, query, JSON body), against `tests/golden/*.json`.
//! A refactor must not change them; a deliberate change is re-recorded with
//! `HOOKBRIDGE_BLESS=1 scripts/test -p hookbridge-tests --test golden` and reviewed in the diff.

use std::collections::BTreeMap;

use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_feishu::{self, FakeFeishu};
use hookbridge_tests::fake_wecom::{self, FakeWeCom};
use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, KEY};
use hookbridge_tests::forgeries;
use hookbridge_tests::{HAP_TOKEN, Harness, config, fixture, request};
use serde_json::{Value, json};

/// HAP and DMS routed to both connectors, with the mappings the fixtures need.
fn both(dingtalk: &str, zentao: &str, dingtalk_extra: &str) -> String {
    format!(
        r#"{dingtalk_extra}
[connectors.zentao.main]
base_url = "{zentao}"
code = "{CODE}"
key = "plain:{KEY}"
sender = {{ id = "hookbridge", name = "HAP 通知", avatar = "" }}

[[routes]]
source = "hap"
connector = "zentao"

[sources.dms]
signature_key = "plain:{dms_key}"

[[routes]]
source = "dms"
connector = "dingtalk"

[[routes]]
source = "dms"
connector = "zentao"

[recipients.dingtalk.map]
"1673826650168842" = "lisi_ding"

[recipients.zentao.map]
manager4220 = "zhangsan"
"0147282552401293909" = "lisi"
"1673826650168842" = "lisi"
"#,
        dms_key = forgeries::KEY,
    )
    .replace("{dingtalk}", dingtalk)
}

/// The requests the fakes received, in order per connector.
fn wire(dingtalk: &FakeDingTalk, zentao: &FakeZenTao) -> Value {
    let dingtalk: Vec<Value> = dingtalk
        .calls("")
        .into_iter()
        .map(|c| {
            let query: BTreeMap<String, String> = c.query.into_iter().collect();
            json!({ "path": c.path, "query": query, "body": c.body })
        })
        .collect();
    let zentao: Vec<Value> = zentao
        .all_calls()
        .into_iter()
        .map(|c| json!({ "entry": c.entry, "query": c.query, "body": c.body }))
        .collect();
    json!({ "dingtalk": dingtalk, "zentao": zentao })
}

fn check(name: &str, got: &Value) {
    let path = format!("{}/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("HOOKBRIDGE_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; record it with HOOKBRIDGE_BLESS=1"));
    assert!(
        want == text,
        "{name}: the requests sent differ from {path}\n--- recorded\n{want}\n--- now\n{text}"
    );
}

/// Posts `(path, body)` in order, draining the senders after each.
async fn scenario(name: &str, dingtalk_extra: &str, posts: &[(&str, String)]) {
    let dingtalk = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    let extra = both(&dingtalk.url, &zentao.url, dingtalk_extra);
    let mut h = Harness::new(config(Some(&dingtalk.url), &extra)).await;
    // Received at a fixed time: messages without a time of their own show when they arrived.
    const RECEIVED: i64 = 1_796_000_000_000;
    for (path, body) in posts {
        let mut req = request(path, body.clone(), Some(HAP_TOKEN));
        // Alertmanager proves itself with a bearer token (the config's is HAP's).
        let bearer = format!("Bearer {HAP_TOKEN}");
        req.headers
            .insert(http::header::AUTHORIZATION, bearer.parse().unwrap());
        // A generic instance proves itself with its own header (its token is HAP's too).
        req.headers
            .insert("x-gitlab-token", HAP_TOKEN.parse().unwrap());
        let resp = h.app.ingress.handle(req, RECEIVED).await;
        assert_eq!(resp.status, 200, "{name} {path}: {}", resp.body);
        h.drain().await;
    }
    check(name, &wire(&dingtalk, &zentao));
}

#[tokio::test]
async fn a_todo_and_its_finish() {
    let posts = [
        ("/hap/message", fixture("hap-message-todo.json")),
        ("/hap/todo", fixture("hap-finish-todo.json")),
    ];
    scenario("hap-todo-and-finish", "", &posts).await;
}

#[tokio::test]
async fn a_todo_in_cards_of_five() {
    let posts = [
        ("/hap/message", fixture("hap-message-todo.json")),
        ("/hap/todo", fixture("hap-finish-todo.json")),
    ];
    scenario("hap-todo-chunk5", "todo_fanout = \"chunk5\"", &posts).await;
}

#[tokio::test]
async fn a_mention_and_a_system_message() {
    let posts = [
        ("/hap/message", fixture("hap-message-mention.json")),
        ("/hap/message", fixture("hap-message-system.json")),
    ];
    scenario("hap-mention-and-system", "", &posts).await;
}

#[tokio::test]
async fn messages_as_plain_text() {
    let posts = [("/hap/message", fixture("hap-message-mention.json"))];
    scenario("hap-mention-text", "notice_format = \"text\"", &posts).await;
}

#[tokio::test]
async fn a_notice_to_150_users() {
    let targets: Vec<String> = (0..150).map(|i| format!("user{i:03}")).collect();
    let body = json!({
        "messageId": "golden-150",
        "message": "系统维护通知：今晚 22:00 停机",
        "messageTypeV2": 11,
        "appName": "运维",
        "redirectUrl": "https://hap.example.com/app/9",
        "targets": targets,
    });
    scenario("hap-notice-150", "", &[("/hap/message", body.to_string())]).await;
}

#[tokio::test]
async fn a_signed_dms_approval() {
    let posts = [("/dms", forgeries::genuine())];
    scenario("dms-approval", "", &posts).await;
}

/// A template that asks for an action card with two buttons (button URLs are not escaped).
const ACTION_CARD: &str = r#"
[templates.hap]
title = "{{ label }}｜{{ appName }}"
text = "{{ message }}"
msgtype = "action_card"
buttons = [
  { title = "去处理", url = "{{ redirectUrl }}" },
  { title = "这是一个超过二十个字的按钮标题会被截断掉的", url = "https://hap.example.com/app?q=a_b" },
]
"#;

#[tokio::test]
async fn a_todo_as_an_action_card() {
    let posts = [("/hap/message", fixture("hap-message-todo.json"))];
    scenario("hap-action-card", ACTION_CARD, &posts).await;
}

#[tokio::test]
async fn a_mention_as_a_link_and_as_an_oa_card() {
    let link = r#"
[templates.hap]
title = "{{ label }}｜{{ appName }}"
text = "{{ message }}"
msgtype = "link"
image = "@lADOADmaWMzazQKA"
"#;
    let posts = [("/hap/message", fixture("hap-message-mention.json"))];
    scenario("hap-link", link, &posts).await;
    let oa = r#"
[templates.hap]
title = "{{ label }}｜{{ appName }}"
text = "{{ message }}"
msgtype = "oa"
"#;
    scenario("hap-oa-notice", oa, &posts).await;
}

#[tokio::test]
async fn routes_to_everyone_and_to_departments() {
    let routes = r#"
[[routes]]
source = "hap"
connector = "dingtalk"
to_all_user = true

[[routes]]
source = "hap"
connector = "dingtalk"
departments = ["1001", "1002"]
"#;
    let posts = [("/hap/message", fixture("hap-message-todo.json"))];
    scenario("hap-everyone-and-departments", routes, &posts).await;
}

/// The Alertmanager source with `routes`: two alerts fire, then one resolves (the next
/// notification repeats the other).
async fn alerts(name: &str, routes: &str) {
    let config =
        format!("[sources.alertmanager]\nbearer_tokens = [\"plain:{HAP_TOKEN}\"]\n{routes}");
    let posts = [
        ("/alertmanager", fixture("alertmanager-firing.json")),
        ("/alertmanager", fixture("alertmanager-one-resolved.json")),
    ];
    scenario(name, &config, &posts).await;
}

/// One card each reading 告警中 and one ZenTao notice each; the resolved one's card turns
/// 已恢复 and ZenTao says it resolved. The repeat sends nothing.
#[tokio::test]
async fn alerts_firing_and_one_resolving() {
    let routes = r#"
[[routes]]
source = "alertmanager"
connector = "dingtalk"
kinds = ["alert"]
users = ["ops1"]

[[routes]]
source = "alertmanager"
connector = "zentao"
kinds = ["alert", "resolved"]
users = ["zhangsan"]
"#;
    alerts("alertmanager-firing-and-resolved", routes).await;
}

/// A route that takes each group as one notice: ZenTao shows the group as it fired, then as
/// one alert resolved, each alert a line.
#[tokio::test]
async fn an_alert_group_as_one_notice() {
    let routes = r#"
[[routes]]
source = "alertmanager"
connector = "zentao"
kinds = ["group"]
users = ["zhangsan"]
"#;
    alerts("alertmanager-group", routes).await;
}

/// A route in English: the card's title, text, labels and bar (Firing, then Resolved).
#[tokio::test]
async fn alerts_in_english() {
    let routes = r#"
[[routes]]
source = "alertmanager"
connector = "dingtalk"
kinds = ["alert"]
users = ["ops1"]
language = "en"
"#;
    alerts("alertmanager-in-english", routes).await;
}

/// A GitLab push through a generic instance, with a route's template over the body, to ZenTao
/// and DingTalk; the same push redelivered sends nothing.
#[tokio::test]
async fn a_gitlab_push_through_a_generic_instance() {
    let routes = format!(
        r#"
[sources.generic.gitlab]
token_header = "X-Gitlab-Token"
token = "plain:{HAP_TOKEN}"
id = "/checkout_sha"
kind = "/object_kind"
recipients = "/user_username"
link = "/project/web_url"

[[routes]]
source = "generic"
connector = "zentao"
template = "push"

[[routes]]
source = "generic"
connector = "dingtalk"
template = "push"

[templates.push]
title = "{{{{ user_name }}}} 推送到 {{{{ project.name }}}}"
text = "{{{{ total_commits_count }}}} 个提交：{{{{ commits[0].title }}}}"
"#
    );
    let push = fixture("generic-gitlab-push.json");
    let posts = [("/in/gitlab", push.clone()), ("/in/gitlab", push)];
    scenario("generic-gitlab-push", &routes, &posts).await;
}

/// Posts HAP's to-do and its finish at a fixed time, sending after each.
async fn todo_and_finish(h: &mut Harness) {
    post_fixtures(
        h,
        &[
            ("/hap/message", "hap-message-todo.json"),
            ("/hap/todo", "hap-finish-todo.json"),
        ],
    )
    .await;
}

/// Posts each fixture to its HAP path at a fixed time and sends what it made.
async fn post_fixtures(h: &mut Harness, posts: &[(&str, &str)]) {
    const RECEIVED: i64 = 1_796_000_000_000;
    for &(path, name) in posts {
        let resp = h
            .app
            .ingress
            .handle(request(path, fixture(name), Some(HAP_TOKEN)), RECEIVED)
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        h.drain().await;
    }
}

/// A HAP to-do and its finish to WeCom: the button card, then its update with the code the
/// send returned (the calls to WeCom in order, the token's included).
#[tokio::test]
async fn a_todo_and_its_finish_to_wecom() {
    let fake = FakeWeCom::start().await;
    let mut h = Harness::new(config(None, &fake_wecom::hap_route(&fake.url))).await;
    todo_and_finish(&mut h).await;
    let calls: Vec<Value> = ["gettoken", "message/send", "message/update_template_card"]
        .into_iter()
        .flat_map(|path| {
            fake.calls(path)
                .into_iter()
                .map(move |body| json!({ "path": path, "body": body }))
        })
        .collect();
    check("wecom-todo-and-finish", &json!({ "wecom": calls }));
}

/// The same to Feishu: a shared card per approver with its uuid, then each card patched green.
#[tokio::test]
async fn a_todo_and_its_finish_to_feishu() {
    let fake = FakeFeishu::start().await;
    let mut h = Harness::new(config(None, &fake_feishu::hap_route(&fake.url))).await;
    todo_and_finish(&mut h).await;
    let calls: Vec<Value> = fake
        .calls()
        .into_iter()
        .map(|(method, path, body)| json!({ "method": method, "path": path, "body": body }))
        .collect();
    check("feishu-todo-and-finish", &json!({ "feishu": calls }));
}

/// What HAP's mention, to-do and finish make the group robots post: the WeCom robot's Markdown
/// with `<@userid>`, and the signed Feishu bot's rich text with its `at` (the fake checks the
/// signature and keeps the body without its timestamp and sign, which change every second).
#[tokio::test]
async fn hap_messages_to_the_group_robots() {
    use hookbridge_tests::fake_feishu_robot::{self, FakeFeishuRobot};
    use hookbridge_tests::fake_wecom_robot::FakeWeComRobot;
    let wecom = FakeWeComRobot::start().await;
    let feishu = FakeFeishuRobot::start(true, None).await;
    let extra = format!(
        "\n[connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\n\
         [connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{}\"\n\
         [recipients.wecom_robot.map]\nwangwu_2231 = \"wangwu\"\n\
         [recipients.feishu_robot.map]\nwangwu_2231 = \"ou_wangwu\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n",
        wecom.webhook(),
        feishu.webhook(),
        fake_feishu_robot::SECRET,
    );
    let mut h = Harness::new(config(None, &extra)).await;
    post_fixtures(
        &mut h,
        &[
            ("/hap/message", "hap-message-mention.json"),
            ("/hap/message", "hap-message-todo.json"),
            ("/hap/todo", "hap-finish-todo.json"),
        ],
    )
    .await;
    check(
        "robots-hap",
        &json!({ "wecom_robot": wecom.calls(), "feishu_robot": feishu.posted() }),
    );
}
