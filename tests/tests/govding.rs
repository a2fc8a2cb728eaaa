//! HAP → 浙政钉 work notifications against the fake gateway: signed form posts, accountIds from
//! the recipient map, a deterministic bizMsgId, "重复" after a lost answer counted as sent, both
//! envelopes and a wrong secret.

use hookbridge::event::Status;
use hookbridge_tests::fake_govding::{APP_SECRET, FakeGovDing, TENANT, hap_route};
use hookbridge_tests::{Harness, config, fixture};
use serde_json::Value;

const MAP: &str = "\n[recipients.govding.map]\nwangwu_2231 = \"10001\"\n";

async fn harness(fake: &FakeGovDing, secret: &str) -> Harness {
    Harness::new(config(
        None,
        &format!("{}{MAP}", hap_route(&fake.url, secret)),
    ))
    .await
}

async fn mention(h: &Harness) {
    let r = h
        .post("/hap/message", &fixture("hap-message-mention.json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

const PK: &str = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";

/// The event's 浙政钉 delivery (the test config also routes HAP to a dry-run DingTalk).
async fn govding(h: &Harness) -> hookbridge::event::Delivery {
    h.deliveries(PK)
        .await
        .into_iter()
        .find(|d| d.connector == "govding")
        .unwrap()
}

#[tokio::test]
async fn a_hap_mention_becomes_a_signed_work_notification() {
    let fake = FakeGovDing::start().await;
    let mut h = harness(&fake, APP_SECRET).await;
    mention(&h).await;
    h.drain().await;
    let d = govding(&h).await;
    assert_eq!(d.status, Status::Sent);
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/message/workNotification");
    assert_eq!(
        (call.param("tenantId"), call.param("receiverIds")),
        (Some(TENANT), Some("10001"))
    );
    let biz = call.param("bizMsgId").unwrap();
    assert!(biz.starts_with("hb-") && biz.len() == 35, "{biz}");
    let msg: Value = serde_json::from_str(call.param("msg").unwrap()).unwrap();
    assert_eq!(msg["msgtype"], "markdown");
    assert!(
        msg["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("请在周五前补充二期报价"),
        "{msg}"
    );
    let result = d.result.unwrap();
    assert_eq!(
        (result["bizMsgId"].as_str(), result["msgId"].as_str()),
        (Some(biz), Some("msg1"))
    );
    let account = format!("govding#{}", hookbridge_tests::fake_govding::APP_KEY);
    assert_eq!(
        h.calls_counted(&account, 1).await,
        1,
        "hookbridge status counts it"
    );
}

#[tokio::test]
async fn a_resend_after_a_lost_answer_is_recognized_as_sent() {
    let fake = FakeGovDing::start().await;
    fake.lose_answers(1);
    let mut h = harness(&fake, APP_SECRET).await;
    mention(&h).await;
    h.drain().await;
    assert_eq!(
        govding(&h).await.status,
        Status::Retrying,
        "a 504 is worth a retry"
    );
    assert_eq!(h.sweep_until(&[Status::Sent], 120, 5).await, [Status::Sent]);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].param("bizMsgId"),
        calls[1].param("bizMsgId"),
        "the same id on resend"
    );
    let d = govding(&h).await;
    assert_eq!(d.result.unwrap()["duplicate"], true);
}

#[tokio::test]
async fn content_as_json_text_is_read_too() {
    let fake = FakeGovDing::start().await;
    fake.content_as_text();
    let mut h = harness(&fake, APP_SECRET).await;
    mention(&h).await;
    h.drain().await;
    let d = govding(&h).await;
    assert_eq!(d.status, Status::Sent);
    assert_eq!(d.result.unwrap()["msgId"], "msg1");
}

#[tokio::test]
async fn a_wrong_secret_is_dead_at_once_and_says_what_to_check() {
    let fake = FakeGovDing::start().await;
    let mut h = harness(&fake, "not-the-secret").await;
    mention(&h).await;
    h.drain().await;
    assert_eq!(fake.rejected_signatures(), 1);
    let d = govding(&h).await;
    assert_eq!(d.status, Status::Dead);
    let reason = d.last_error.unwrap();
    assert!(
        reason.contains("SignatureDoesNotMatch") && reason.contains("app_secret"),
        "{reason}"
    );
}

#[tokio::test]
async fn unmapped_users_are_reported_not_sent() {
    let fake = FakeGovDing::start().await;
    let text = format!(
        "{}\n[recipients.govding]\nmode = \"require\"\n",
        hap_route(&fake.url, APP_SECRET)
    );
    let mut h = Harness::new(config(None, &text)).await;
    mention(&h).await;
    h.drain().await;
    assert!(fake.calls().is_empty());
    let d = govding(&h).await;
    assert_eq!(d.status, Status::Skipped);
    assert!(
        d.last_error
            .unwrap()
            .contains("no 浙政钉 accountId for wangwu_2231")
    );
}

/// The gateway's read receipt for a message hookbridge sent, as its callback carries it.
fn read_receipt(biz_msg_id: &str) -> String {
    fixture("govding-notification-read.json").replace("hb-7f3a9c01e2d4b6a8c0e1f3a5", biz_msg_id)
}

#[tokio::test]
async fn a_receipt_is_noted_on_the_delivery_it_is_about() {
    let fake = FakeGovDing::start().await;
    let token = "receipt-test-token-0123";
    let text = format!(
        "{}{MAP}\n[sources.govding]\npath_token = \"plain:{token}\"\n",
        hap_route(&fake.url, APP_SECRET)
    );
    let mut h = Harness::new(config(None, &text)).await;
    mention(&h).await;
    h.drain().await;
    let sent = govding(&h).await;
    let biz = sent.result.unwrap()["bizMsgId"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = h
        .post(&format!("/govding/{token}"), &read_receipt(&biz))
        .await;
    assert_eq!(r.body, r#"{"errcode":"0","errmsg":"成功"}"#);
    assert_eq!(
        h.drain().await,
        [Status::Sent],
        "one bookkeeping delivery, no notification"
    );
    let receipts = govding(&h).await.receipts;
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        (
            &receipts[0]["status"],
            &receipts[0]["receivers"],
            &receipts[0]["msgType"]
        ),
        (
            &serde_json::json!("read"),
            &serde_json::json!(["10001"]),
            &serde_json::json!("workNotification")
        )
    );

    // The gateway retries the same callback: nothing is noted twice.
    h.post(&format!("/govding/{token}"), &read_receipt(&biz))
        .await;
    assert!(h.drain().await.is_empty());
    assert_eq!(govding(&h).await.receipts.len(), 1);

    // A receipt about a message this hookbridge never sent is recorded as such.
    h.post(&format!("/govding/{token}"), &read_receipt("hb-not-ours"))
        .await;
    assert_eq!(h.drain().await, [Status::Skipped]);
}

#[tokio::test]
async fn employee_codes_are_looked_up_once_until_the_employee_changes() {
    let fake = FakeGovDing::start().await;
    fake.set_directory(&[("GE_wangwu", "10009")]);
    let token = "contacts-test-token-0123";
    let text = format!(
        "{}\n[recipients.govding.map]\nwangwu_2231 = \"GE_wangwu\"\n[sources.govding]\npath_token = \"plain:{token}\"\n",
        hap_route(&fake.url, APP_SECRET).replace(
            &format!("tenant_id = \"{TENANT}\"\n"),
            &format!("tenant_id = \"{TENANT}\"\nemployee_codes = true\n")
        )
    );
    let mut h = Harness::new(config(None, &text)).await;
    let mention_as = |id: &str| {
        fixture("hap-message-mention.json").replace("9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a", id)
    };
    let sent_to = |fake: &FakeGovDing| -> Vec<String> {
        fake.calls()
            .iter()
            .filter(|c| c.path == "/message/workNotification")
            .map(|c| c.param("receiverIds").unwrap_or("").to_owned())
            .collect()
    };
    let lookups = |fake: &FakeGovDing| {
        fake.calls()
            .iter()
            .filter(|c| c.path == "/mozi/employee/listEmployeeAccountIds")
            .count()
    };
    for id in ["m-1", "m-2"] {
        h.post("/hap/message", &mention_as(id)).await;
        h.drain().await;
    }
    assert_eq!(sent_to(&fake), ["10009", "10009"]);
    assert_eq!(
        lookups(&fake),
        1,
        "the second send used the cached accountId"
    );

    // The gateway says the employee changed: the next send looks them up again.
    fake.set_directory(&[("GE_wangwu", "10010")]);
    let changed = fixture("govding-employee-leave.json")
        .replace("EMPLOYEE_LEAVE", "EMPLOYEE_ADD_UPDATE")
        .replace("GE_3a5c7e9b1d2f4a6c8e0b2d4f6a8c0e1b", "GE_wangwu");
    let r = h.post(&format!("/govding/{token}"), &changed).await;
    assert_eq!(r.status, 200);
    h.drain().await;
    h.post("/hap/message", &mention_as("m-3")).await;
    h.drain().await;
    assert_eq!(sent_to(&fake), ["10009", "10009", "10010"]);
    assert_eq!(lookups(&fake), 2);

    // Nobody in the directory: nothing to send to, and the delivery says why.
    fake.set_directory(&[]);
    h.post(
        &format!("/govding/{token}"),
        &changed.replace("196729", "196730"),
    )
    .await;
    h.drain().await;
    h.post("/hap/message", &mention_as("m-4")).await;
    h.drain().await;
    let d = h
        .deliveries("EVT#hap#m-4")
        .await
        .into_iter()
        .find(|d| d.connector == "govding")
        .unwrap();
    assert_eq!(d.status, Status::Dead);
    assert!(
        d.last_error
            .unwrap()
            .contains("no accountId for employee codes GE_wangwu")
    );
}

#[tokio::test]
async fn an_access_token_is_fetched_once_for_tenants_that_want_one() {
    let fake = FakeGovDing::start().await;
    fake.require_token();
    let route = hap_route(&fake.url, APP_SECRET);
    let without = Harness::new(config(None, &format!("{route}{MAP}"))).await;
    let mut without = without;
    mention(&without).await;
    without.drain().await;
    assert_eq!(
        govding(&without).await.status,
        Status::Dead,
        "this tenant wants a token"
    );

    let with = route.replace(
        &format!("tenant_id = \"{TENANT}\"\n"),
        &format!("tenant_id = \"{TENANT}\"\nsend_access_token = true\n"),
    );
    let mut h = Harness::new(config(None, &format!("{with}{MAP}"))).await;
    for id in ["t-1", "t-2"] {
        let body =
            fixture("hap-message-mention.json").replace("9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a", id);
        h.post("/hap/message", &body).await;
        h.drain().await;
    }
    let calls = fake.calls();
    let tokens: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "/gettoken.json")
        .collect();
    assert_eq!(tokens.len(), 1, "fetched once, then reused");
    let sent: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "/message/workNotification" && c.param("access_token").is_some())
        .collect();
    assert_eq!(sent.len(), 2);
    let d = h
        .deliveries("EVT#hap#t-2")
        .await
        .into_iter()
        .find(|d| d.connector == "govding")
        .unwrap();
    assert_eq!(d.status, Status::Sent);
}

/// `hookbridge deliveries recall` of a 浙政钉 notification: `/message/revoke` with its bizMsgId,
/// noted on the delivery.
#[tokio::test]
async fn a_sent_notification_is_recalled_by_its_biz_msg_id() {
    let fake = FakeGovDing::start().await;
    let mut h = harness(&fake, APP_SECRET).await;
    mention(&h).await;
    h.drain().await;
    let d = govding(&h).await;
    let recalled = hookbridge::operator::recall(&h.app, &d.key(), hookbridge::event::now_ms())
        .await
        .unwrap();
    let calls = fake.calls();
    let revoke = calls.iter().find(|c| c.path == "/message/revoke").unwrap();
    let biz = d.result.as_ref().unwrap()["bizMsgId"].as_str().unwrap();
    assert_eq!(
        (revoke.param("bizMsgId"), revoke.param("tenantId")),
        (Some(biz), Some(TENANT))
    );
    assert_eq!(recalled.receipts.last().unwrap()["status"], "recalled");
}
