//! Every system hookbridge sends to that can whitelist its callers' addresses refuses a caller
//! it does not list, as its fake does the way the system does (DingTalk 60020 naming the
//! address, 浙政钉 访问IP不在白名单中, a robot's 310000, ZenTao 403 IP_DENIED): the delivery is
//! dead with what to do, and goes out once the address is listed and it is replayed.

use hookbridge::event::Status;
use hookbridge_tests::allowlist::Allowlist;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_feishu::{self, FakeFeishu};
use hookbridge_tests::fake_feishu_robot::FakeFeishuRobot;
use hookbridge_tests::fake_govding::{self, FakeGovDing};
use hookbridge_tests::fake_robot::FakeRobot;
use hookbridge_tests::fake_wecom::{self, FakeWeCom};
use hookbridge_tests::fake_zentao::{self, FakeZenTao};
use hookbridge_tests::{Harness, config, fixture};

const EVENT: &str = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";

/// Posts a HAP message to a harness whose only live connector is `connector`, with its fake
/// listing only another address; checks the dead delivery's reason, then lists this machine,
/// replays, and checks it went out.
async fn refused_then_listed(
    mut h: Harness,
    connector: &str,
    allowlist: &Allowlist,
    reason: &[&str],
) {
    allowlist.only(&["127.0.0.2"]);
    assert_eq!(
        h.post("/hap/message", &fixture("hap-message-mention.json"))
            .await
            .status,
        200
    );
    h.drain().await;
    let find = |all: Vec<hookbridge::event::Delivery>| {
        all.into_iter()
            .find(|d| d.connector == connector)
            .expect("a delivery")
    };
    let dead = find(h.deliveries(EVENT).await);
    assert_eq!(dead.status, Status::Dead, "{connector}: {dead:?}");
    let why = dead.last_error.clone().unwrap_or_default();
    for part in reason {
        assert!(why.contains(part), "{connector}: {why}");
    }
    allowlist.only(&["127.0.0.1"]);
    h.app
        .store
        .replay(&dead.key(), hookbridge::event::now_ms())
        .await
        .unwrap()
        .expect("dead, so replayed");
    h.drain().await;
    let again = find(h.app.store.deliveries_of(EVENT).await.unwrap());
    assert!(
        matches!(again.status, Status::Sent | Status::Checking),
        "{connector}: {again:?}"
    );
}

#[tokio::test]
async fn dingtalk_names_the_address_it_refused() {
    let fake = FakeDingTalk::start().await;
    let h = Harness::new(config(Some(&fake.url), "")).await;
    refused_then_listed(
        h,
        "dingtalk",
        &fake.allowlist,
        &["60020", "came from 127.0.0.1", "服务器出口IP", "EgressMode"],
    )
    .await;
}

#[tokio::test]
async fn govding_refuses_an_unlisted_caller() {
    let fake = FakeGovDing::start().await;
    let extra = fake_govding::hap_route(&fake.url, fake_govding::APP_SECRET);
    let h = Harness::new(config(None, &extra)).await;
    refused_then_listed(h, "govding", &fake.allowlist, &["白名单", "egress IP"]).await;
}

#[tokio::test]
async fn a_robot_in_ip_mode_refuses_an_unlisted_caller() {
    let fake = FakeRobot::start(false, None).await;
    let extra = format!(
        "\n[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n",
        fake.webhook()
    );
    let h = Harness::new(config(None, &extra)).await;
    refused_then_listed(
        h,
        "dingtalk_robot",
        &fake.allowlist,
        &["310000", "127.0.0.1 not in whitelist", "egress IP"],
    )
    .await;
}

#[tokio::test]
async fn a_feishu_bot_with_an_ip_whitelist_refuses_an_unlisted_caller() {
    let fake = FakeFeishuRobot::start(false, None).await;
    let extra = format!(
        "\n[connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n",
        fake.webhook()
    );
    let h = Harness::new(config(None, &extra)).await;
    refused_then_listed(
        h,
        "feishu_robot",
        &fake.allowlist,
        &["19022", "Ip Not Allowed", "IP whitelist"],
    )
    .await;
}

#[tokio::test]
async fn a_wecom_app_refuses_a_caller_outside_its_trusted_ips() {
    let fake = FakeWeCom::start().await;
    let h = Harness::new(config(None, &fake_wecom::hap_route(&fake.url))).await;
    refused_then_listed(h, "wecom", &fake.allowlist, &["60020", "企业可信IP"]).await;
}

#[tokio::test]
async fn a_feishu_app_with_an_ip_whitelist_refuses_an_unlisted_caller() {
    let fake = FakeFeishu::start().await;
    let h = Harness::new(config(None, &fake_feishu::hap_route(&fake.url))).await;
    refused_then_listed(h, "feishu", &fake.allowlist, &["99991401", "IP whitelist"]).await;
}

#[tokio::test]
async fn zentao_refuses_an_unlisted_caller() {
    let fake = FakeZenTao::start().await;
    let h = Harness::new(config(None, &fake_zentao::hap_route(&fake.url))).await;
    refused_then_listed(h, "zentao", &fake.allowlist, &["403", "egress IP"]).await;
}
