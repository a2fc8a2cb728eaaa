//! WeCom group robots through the whole pipeline against the fake robot: Markdown with
//! `<@userid>`, text with mobiles and `@all`, news, a wrong key, the 20-a-minute window, and an
//! Alertmanager alert firing and resolving.

use hookbridge::event::Status;
use hookbridge_tests::fake_wecom_robot::{FakeWeComRobot, KEY};
use hookbridge_tests::{Harness, config};
use serde_json::{Value, json};

/// HAP routed to the WeCom robot `ops` (its webhook as the robot's page shows it, or `webhook`
/// instead), with `route` in the route.
async fn robot(webhook: Option<&str>, route: &str) -> (FakeWeComRobot, Harness) {
    let fake = FakeWeComRobot::start().await;
    let webhook = webhook.map_or_else(|| fake.webhook(), str::to_owned);
    let extra = format!(
        "\n[connectors.wecom_robot.ops]\nwebhook = \"plain:{webhook}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n{route}\n"
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

/// The robot's deliveries after the pipeline drained (the DingTalk work notice is dry-run).
async fn post(h: &mut Harness, body: &str) -> Vec<(Status, Option<String>)> {
    assert_eq!(h.post("/hap/message", body).await.status, 200);
    let id = serde_json::from_str::<Value>(body).unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    h.drain().await;
    h.deliveries(&format!("EVT#hap#{id}"))
        .await
        .into_iter()
        .filter(|d| d.connector == "wecom_robot")
        .map(|d| (d.status, d.last_error))
        .collect()
}

#[tokio::test]
async fn markdown_mentions_userids_and_says_which_mobiles_it_could_not() {
    let (fake, mut h) = robot(None, "").await;
    let got = post(&mut h, &message("w1", &["zhangsan", "13800000000"])).await;
    assert_eq!(got[0].0, Status::Sent);
    assert_eq!(
        h.calls_counted("wecom_robot#ops", 1).await,
        1,
        "hookbridge status counts it"
    );
    assert_eq!(got[1].0, Status::Skipped);
    assert!(
        got[1].1.as_deref().unwrap().contains("13800000000"),
        "{got:?}"
    );
    let body = &fake.posted()[0];
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        content.contains(r"\*orders\*"),
        "values are escaped: {content}"
    );
    assert!(
        content.contains("[查看详情](https://hap.example.com/app/1/row/2)"),
        "{content}"
    );
    assert!(content.ends_with("<@zhangsan>"), "{content}");
}

#[tokio::test]
async fn a_text_template_mentions_mobiles_and_everyone() {
    let template = "template = \"t\"\n\n[templates.t]\ntitle = \"{{ appName }}\"\n\
                    text = \"{{ message }}\"\nmsgtype = \"text\"\n";
    let (fake, mut h) = robot(
        None,
        &format!("users = [\"13800000000\", \"@all\"]\n{template}"),
    )
    .await;
    assert_eq!(post(&mut h, &message("w2", &[])).await[0].0, Status::Sent);
    let text = &fake.posted()[0]["text"];
    assert_eq!(text["mentioned_list"], json!(["@all"]));
    assert_eq!(text["mentioned_mobile_list"], json!(["13800000000"]));
    assert!(
        text["content"].as_str().unwrap().contains("*orders*"),
        "text is not escaped"
    );
}

#[tokio::test]
async fn a_link_template_with_a_picture_is_a_news_article() {
    let template = "template = \"t\"\n\n[templates.t]\ntitle = \"{{ appName }}\"\n\
                    text = \"{{ message }}\"\nmsgtype = \"link\"\nimage = \"https://hap.example.com/p.png\"\n";
    let (fake, mut h) = robot(None, template).await;
    assert_eq!(post(&mut h, &message("w3", &[])).await[0].0, Status::Sent);
    let article = &fake.posted()[0]["news"]["articles"][0];
    assert_eq!(article["url"], "https://hap.example.com/app/1/row/2");
    assert_eq!(article["picurl"], "https://hap.example.com/p.png");
}

/// A card template is a `text_notice` template card that opens the link; it mentions nobody,
/// and says so.
#[tokio::test]
async fn a_card_template_is_a_template_card() {
    let template = "template = \"t\"\n\n[templates.t]\ntitle = \"{{ appName }}\"\n\
                    text = \"{{ message }}\"\nmsgtype = \"action_card\"\n";
    let (fake, mut h) = robot(None, template).await;
    let got = post(&mut h, &message("w5", &["zhangsan"])).await;
    assert_eq!(got[0].0, Status::Sent, "{got:?}");
    let card = &fake.posted()[0]["template_card"];
    assert_eq!(card["card_type"], "text_notice");
    assert_eq!(
        card["card_action"]["url"],
        "https://hap.example.com/app/1/row/2"
    );
    assert!(got[1].1.as_deref().unwrap().contains("zhangsan"), "{got:?}");
}

#[tokio::test]
async fn a_wrong_key_is_dead_with_what_to_check_and_the_key_is_never_said() {
    let fake = FakeWeComRobot::start().await;
    let with_key = format!("{}/cgi-bin/webhook/send?key=wrong-key", fake.url);
    let (_, mut wrong) = robot(Some(&with_key), "").await;
    let got = post(&mut wrong, &message("w4", &[])).await;
    assert_eq!(got[0].0, Status::Dead);
    let reason = got[0].1.as_deref().unwrap();
    assert!(
        reason.contains("93000") && reason.contains("check webhook"),
        "{reason}"
    );
    assert!(
        !reason.contains("wrong-key") && !reason.contains(KEY),
        "{reason}"
    );
    assert!(
        !reason.contains("from ip"),
        "WeCom's hint is left out: {reason}"
    );
}

#[tokio::test]
async fn the_21st_post_of_a_minute_waits_without_calling() {
    let (fake, mut h) = robot(None, "").await;
    for i in 0..21 {
        let got = post(&mut h, &message(&format!("burst{i}"), &[])).await;
        let want = if i < 20 {
            Status::Sent
        } else {
            Status::Retrying
        };
        assert_eq!(got[0].0, want, "post {i}");
    }
    assert_eq!(
        fake.calls().len(),
        20,
        "the 21st was held here, not refused there"
    );
    let held = h.deliveries("EVT#hap#burst20").await;
    let d = held.iter().find(|d| d.connector == "wecom_robot").unwrap();
    assert_eq!(d.attempts, 0, "holding back spends no attempt");
}

/// An alert fires and resolves: the robot posts both, the resolved one in its own words.
#[tokio::test]
async fn an_alert_firing_then_resolved() {
    let fake = FakeWeComRobot::start().await;
    let extra = format!(
        "\n[sources.alertmanager]\nbearer_tokens = [\"plain:am\"]\n\
         [connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"wecom_robot\"\nkinds = [\"alert\", \"resolved\"]\nusers = [\"@all\"]\n",
        fake.webhook()
    );
    let mut h = Harness::new(config(None, &extra)).await;
    for name in ["alertmanager-firing.json", "alertmanager-one-resolved.json"] {
        let mut req =
            hookbridge_tests::request("/alertmanager", hookbridge_tests::alerts_now(name), None);
        req.headers
            .insert(http::header::AUTHORIZATION, "Bearer am".parse().unwrap());
        assert_eq!(
            h.app
                .ingress
                .handle(req, hookbridge::event::now_ms())
                .await
                .status,
            200
        );
        h.drain().await;
    }
    let contents: Vec<String> = fake
        .posted()
        .iter()
        .map(|b| b["markdown"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        contents.len(),
        3,
        "two alerts fired, one resolved: {contents:?}"
    );
    assert!(
        contents[0].starts_with("**【告警】HighLatency（critical）**"),
        "{}",
        contents[0]
    );
    assert!(
        contents[2].starts_with("**【已恢复】HighLatency"),
        "{}",
        contents[2]
    );
    assert!(contents.iter().all(|c| c.ends_with("<@all>")));
}
