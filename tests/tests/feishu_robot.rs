//! Feishu custom bots through the whole pipeline against the fake bot: 签名校验, keywords, rich
//! text and text with @mentions, a wrong secret, the 5-a-second window.

use hookbridge::event::Status;
use hookbridge_tests::fake_feishu_robot::{FakeFeishuRobot, SECRET};
use hookbridge_tests::{Harness, config};
use serde_json::{Value, json};

/// HAP routed to the bot `ops` (signed with `secret`, or with a keyword), `route` in the route.
async fn bot(
    secret: Option<&str>,
    keyword: Option<&str>,
    route: &str,
) -> (FakeFeishuRobot, Harness) {
    let fake = FakeFeishuRobot::start(secret.is_some(), keyword).await;
    let secret = secret.map_or(String::new(), |s| format!("secret = \"plain:{s}\"\n"));
    let keyword = keyword.map_or(String::new(), |k| format!("keyword = \"{k}\"\n"));
    let extra = format!(
        "\n[connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\n{secret}{keyword}\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n{route}\n",
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

/// The bot's deliveries after the pipeline drained.
async fn post(h: &mut Harness, body: &str) -> Vec<(Status, Option<String>, u32)> {
    assert_eq!(h.post("/hap/message", body).await.status, 200);
    let id = serde_json::from_str::<Value>(body).unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    h.drain().await;
    h.deliveries(&format!("EVT#hap#{id}"))
        .await
        .into_iter()
        .filter(|d| d.connector == "feishu_robot")
        .map(|d| (d.status, d.last_error, d.attempts))
        .collect()
}

#[tokio::test]
async fn a_signed_bot_posts_rich_text_and_mentions_the_recipients() {
    let (fake, mut h) = bot(Some(SECRET), None, "").await;
    let got = post(&mut h, &message("f1", &["ou_1", "@all"])).await;
    assert_eq!(got[0].0, Status::Sent, "{got:?}");
    let body = &fake.posted()[0];
    let post = &body["content"]["post"]["zh_cn"];
    let content = post["content"].as_array().unwrap();
    assert_eq!(
        content[0][0]["text"], "生产库 *orders* 表结构变更已执行",
        "not escaped"
    );
    assert_eq!(
        content.last().unwrap(),
        &json!([{"tag": "at", "user_id": "ou_1"}, {"tag": "at", "user_id": "all"}])
    );
}

#[tokio::test]
async fn a_wrong_secret_is_dead_with_what_to_check() {
    let (fake, mut h) = bot(Some("not-the-secret"), None, "").await;
    let got = post(&mut h, &message("f2", &[])).await;
    assert_eq!(got[0].0, Status::Dead);
    let reason = got[0].1.as_deref().unwrap();
    assert!(
        reason.contains("19021") && reason.contains("check the bot's secret"),
        "{reason}"
    );
    assert!(fake.posted().is_empty());
}

#[tokio::test]
async fn the_keyword_is_added_and_a_text_template_mentions_with_at_tags() {
    let template = "template = \"t\"\n\n[templates.t]\ntitle = \"{{ appName }}\"\n\
                    text = \"{{ message }}\"\nmsgtype = \"text\"\n";
    let (fake, mut h) = bot(
        None,
        Some("告警"),
        &format!("users = [\"ou_2\"]\n{template}"),
    )
    .await;
    assert_eq!(post(&mut h, &message("f3", &[])).await[0].0, Status::Sent);
    let text = fake.posted()[0]["content"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.starts_with("【【告警】运维】"), "{text}");
    assert!(text.ends_with("<at user_id=\"ou_2\"></at>"), "{text}");
}

#[tokio::test]
async fn the_sixth_post_of_a_second_waits_without_calling() {
    let (fake, mut h) = bot(None, None, "").await;
    for i in 0..5 {
        h.post("/hap/message", &message(&format!("s{i}"), &[]))
            .await;
    }
    let got = post(&mut h, &message("s5", &[])).await;
    assert_eq!(
        (got[0].0, got[0].2),
        (Status::Retrying, 0),
        "held here, no attempt spent: {got:?}"
    );
    assert!(
        got[0].1.as_deref().unwrap().contains("for this minute"),
        "{got:?}"
    );
    assert_eq!(fake.calls().len(), 5, "Feishu never saw a sixth");
}
