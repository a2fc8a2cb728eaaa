//! DingTalk group robots through the whole pipeline against the fake robot: 加签, keywords,
//! every message shape, @mentions, the 20-a-minute window, and retries that post once.

use hookbridge::event::Status;
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::{Harness, config, fixture};
use serde_json::{Value, json};

/// HAP routed to the robot `ops` (signed with its secret, or with a keyword) with `extra`
/// in the route, and a template `t` when given.
async fn robot(
    signed: bool,
    keyword: Option<&str>,
    route: &str,
    template: &str,
) -> (FakeRobot, Harness) {
    let fake = FakeRobot::start(signed, keyword).await;
    let secret = if signed {
        format!("secret = \"plain:{SECRET}\"\n")
    } else {
        String::new()
    };
    let keyword = keyword.map_or(String::new(), |k| format!("keyword = \"{k}\"\n"));
    let extra = format!(
        "\n[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\n{secret}{keyword}\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n{route}\n{template}",
        fake.webhook()
    );
    (fake, Harness::new(config(None, &extra)).await)
}

fn message(id: &str, targets: &[&str]) -> String {
    json!({
        "messageId": id,
        "message": "生产库 *orders* 表结构变更已执行",
        "messageTypeV2": 16,
        "appName": "运维",
        "redirectUrl": "https://hap.example.com/app/1/row/2",
        "targets": targets,
    })
    .to_string()
}

/// The robot's statuses after the pipeline drained (the DingTalk work notice is dry-run).
async fn post(h: &mut Harness, body: &str) -> Vec<Status> {
    assert_eq!(h.post("/hap/message", body).await.status, 200);
    let pk = format!(
        "EVT#hap#{}",
        serde_json::from_str::<Value>(body).unwrap()["messageId"]
            .as_str()
            .unwrap()
    );
    h.drain().await;
    h.deliveries(&pk)
        .await
        .into_iter()
        .filter(|d| d.connector == "dingtalk_robot")
        .map(|d| d.status)
        .collect()
}

#[tokio::test]
async fn a_signed_robot_posts_markdown_and_mentions_the_recipients() {
    let (fake, mut h) = robot(true, None, "", "").await;
    let statuses = post(&mut h, &message("r1", &["13800000000", "ding_u1"])).await;
    assert_eq!(statuses, [Status::Sent]);
    let posted = fake.posted();
    assert_eq!(posted.len(), 1);
    let body = &posted[0];
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(
        body["at"],
        json!({"atMobiles": ["13800000000"], "atUserIds": ["ding_u1"], "isAtAll": false})
    );
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.contains(r"\*orders\*"), "values are escaped: {text}");
    assert!(text.ends_with("@13800000000 @ding_u1"), "{text}");
    assert_eq!(body["msgUuid"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn a_wrong_secret_is_dead_with_what_to_check() {
    let fake = FakeRobot::start(true, None).await;
    let extra = format!(
        "\n[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:SECwrong\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n",
        fake.webhook()
    );
    let mut h = Harness::new(config(None, &extra)).await;
    assert_eq!(post(&mut h, &message("r2", &[])).await, [Status::Dead]);
    let d = h.deliveries("EVT#hap#r2").await;
    let dead = d.iter().find(|d| d.connector == "dingtalk_robot").unwrap();
    let reason = dead.last_error.as_deref().unwrap();
    assert!(
        reason.contains("310000") && reason.contains("check the robot's secret"),
        "{reason}"
    );
    assert!(fake.posted().is_empty());
}

#[tokio::test]
async fn the_keyword_is_added_when_the_message_lacks_it() {
    let (fake, mut h) = robot(false, Some("告警"), "", "").await;
    assert_eq!(post(&mut h, &message("r3", &[])).await, [Status::Sent]);
    let body = &fake.posted()[0];
    assert!(
        body["markdown"]["title"]
            .as_str()
            .unwrap()
            .starts_with("【告警】")
    );
    assert!(body.get("at").is_none(), "nobody to mention");
}

#[tokio::test]
async fn everyone_is_mentioned_with_at_all() {
    let (fake, mut h) = robot(false, None, "users = [\"@all\"]", "").await;
    assert_eq!(
        post(&mut h, &message("r4", &["ding_u1"])).await,
        [Status::Sent]
    );
    assert_eq!(fake.posted()[0]["at"]["isAtAll"], true);
}

#[tokio::test]
async fn templates_choose_text_link_action_card_and_feed_card() {
    let shapes = [
        ("text", "", "text"),
        (
            "link",
            "image = \"https://hap.example.com/p.png\"\n",
            "link",
        ),
        (
            "action_card",
            "buttons = [{ title = \"查看\", url = \"{{ redirectUrl }}\" }, { title = \"忽略\", url = \"https://hap.example.com/x_y\" }]\n",
            "actionCard",
        ),
        (
            "feed_card",
            "image = \"https://hap.example.com/p.png\"\n",
            "feedCard",
        ),
    ];
    for (msgtype, more, wire) in shapes {
        let template = format!(
            "template = \"t\"\n\n[templates.t]\ntitle = \"{{{{ appName }}}}\"\ntext = \"{{{{ message }}}}\"\nmsgtype = \"{msgtype}\"\n{more}"
        );
        let (fake, mut h) = robot(false, None, "", &template).await;
        assert_eq!(
            post(&mut h, &message("r5", &[])).await,
            [Status::Sent],
            "{msgtype}"
        );
        let body = &fake.posted()[0];
        assert_eq!(body["msgtype"], wire, "{body}");
        match wire {
            "link" => assert_eq!(
                body["link"]["messageUrl"],
                "https://hap.example.com/app/1/row/2"
            ),
            "actionCard" => {
                assert_eq!(
                    body["actionCard"]["btns"][1]["actionURL"],
                    "https://hap.example.com/x_y"
                );
                assert_eq!(body["actionCard"]["btnOrientation"], "0");
            }
            "feedCard" => assert_eq!(
                body["feedCard"]["links"][0]["picURL"],
                "https://hap.example.com/p.png"
            ),
            _ => assert!(
                body["text"]["content"]
                    .as_str()
                    .unwrap()
                    .contains("*orders*")
            ),
        }
    }
}

#[tokio::test]
async fn the_21st_post_of_a_minute_waits_without_calling() {
    let (fake, mut h) = robot(false, None, "", "").await;
    for i in 0..21 {
        let statuses = post(&mut h, &message(&format!("burst{i}"), &[])).await;
        let want = if i < 20 {
            Status::Sent
        } else {
            Status::Retrying
        };
        assert_eq!(statuses, [want], "post {i}");
    }
    assert_eq!(
        fake.calls().len(),
        20,
        "the 21st was held here, not refused there"
    );
    let held = h.deliveries("EVT#hap#burst20").await;
    let d = held
        .iter()
        .find(|d| d.connector == "dingtalk_robot")
        .unwrap();
    assert_eq!(d.attempts, 0, "holding back spends no attempt");
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("messages for this minute")
    );
}

#[tokio::test]
async fn a_retried_post_carries_the_same_msg_uuid_and_shows_once() {
    let (fake, mut h) = robot(false, None, "", "").await;
    assert_eq!(post(&mut h, &message("r6", &[])).await, [Status::Sent]);
    // The same delivery sent again, as after a lost answer: same body, same msgUuid.
    let d = h.deliveries("EVT#hap#r6").await;
    let d = d
        .iter()
        .find(|d| d.connector == "dingtalk_robot")
        .unwrap()
        .clone();
    let connector = h.app.sender.connector("dingtalk_robot").unwrap().clone();
    assert!(matches!(
        connector.deliver(&d).await,
        hookbridge::event::Outcome::Sent(_)
    ));
    assert_eq!((fake.calls().len(), fake.posted().len()), (2, 1));
    assert_eq!(fake.calls()[0]["msgUuid"], fake.calls()[1]["msgUuid"]);
}

#[tokio::test]
async fn a_fixture_renders_the_same_post_every_time() {
    // Received at a fixed time: the post shows when a message without a time arrived.
    const RECEIVED: i64 = 1_796_000_000_000;
    let (fake, mut h) = robot(false, None, "", "").await;
    assert_eq!(
        h.post_at(
            "/hap/message",
            &fixture("hap-message-mention.json"),
            RECEIVED
        )
        .await
        .status,
        200
    );
    h.drain().await;
    let posted = fake.posted();
    assert_eq!(posted.len(), 1);
    let (_, again) = robot(false, None, "", "").await;
    assert_eq!(
        again
            .post_at(
                "/hap/message",
                &fixture("hap-message-mention.json"),
                RECEIVED
            )
            .await
            .status,
        200
    );
    let d = again
        .deliveries("EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a")
        .await;
    let robot_post = d.iter().find(|d| d.connector == "dingtalk_robot").unwrap();
    assert_eq!(
        robot_post.message["body"], posted[0],
        "deterministic, so a retry is identical"
    );
}
