//! DMS webhooks through the ingress pipeline and on to DingTalk: signatures (computed here
//! independently, with each construction's formula), Basic auth, DMS's response format,
//! tolerant parsing and deduplication.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use hookbridge::event::{Status, now_ms};
use hookbridge::ingress::Response;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{Harness, config, fixture};
use serde_json::{Value, json};

const URL: &str = "https://hook.example.com/dms";
const LISI: &str = "1673826650168842";

fn dms(signature: &str, extra: &str) -> String {
    format!(
        r#"
[sources.dms]
webhook_url = "{URL}"
{signature}
{extra}

[[routes]]
source = "dms"
connector = "dingtalk"

[recipients.dingtalk.map]
"{LISI}" = "lisi_ding"
"#
    )
}

async fn harness(dingtalk: Option<&str>, signature: &str, extra: &str) -> Harness {
    Harness::new(config(dingtalk, &dms(signature, extra))).await
}

async fn post(h: &Harness, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = hookbridge_tests::request("/dms", body.to_owned(), None);
    req.headers
        .insert("dms-event", "Message Hook".parse().unwrap());
    for (k, v) in headers {
        req.headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let Response { status, body } = h.app.ingress.handle(req, now_ms()).await;
    (status.as_u16(), serde_json::from_str(&body).unwrap())
}

fn hmac_b64(key: &str, message: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The approval fixture re-signed with `signature`.
fn approval_signed(signature: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    v["signatureText"] = json!(signature);
    v.to_string()
}

fn canonical_event() -> String {
    let v: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    v["messageEvent"].to_string()
}

fn ok(r: (u16, Value)) {
    assert_eq!(r.1, json!({"root": "", "success": true}), "status {}", r.0);
    assert_eq!(r.0, 200);
}

#[tokio::test]
async fn the_signed_fixture_is_accepted_and_delivered_to_the_mapped_user() {
    let fake = FakeDingTalk::start().await;
    let mut h = harness(Some(&fake.url), "signature_key = \"plain:dms-secret\"", "").await;
    ok(post(&h, &fixture("dms-approval-pending.json"), &[]).await);
    assert_eq!(h.drain().await, [Status::Sent]);
    let task = &fake.tasks()[0];
    assert_eq!(task.userids, ["lisi_ding"]);
    let text = task.content["markdown"]["text"].as_str().unwrap();
    assert!(text.starts_with("#### 【DMS】数据变更待审批 #"), "{text}");
    assert!(
        text.contains("任务：订单表历史数据修复（4829103）") && text.contains("提交人：张三"),
        "{text}"
    );
}

#[tokio::test]
async fn every_construction_is_accepted_with_the_right_key_and_rejected_with_a_wrong_one() {
    let event = canonical_event();
    for (name, key, message) in [
        ("A", "dms-secret".to_owned(), event.clone()),
        ("B", "dms-secret".to_owned(), format!("{URL}{event}")),
        ("C", format!("{URL}dms-secret"), event.clone()),
        ("D", "dms-secret".to_owned(), format!("{event}{URL}")),
        ("E", "dms-secret".to_owned(), format!("{URL}\n{event}")),
        ("F", "dms-secret".to_owned(), URL.to_owned()),
    ] {
        let body = approval_signed(&hmac_b64(&key, &message));
        let right = harness(None, "signature_key = \"plain:dms-secret\"", "").await;
        ok(post(&right, &body, &[]).await);
        let wrong = harness(None, "signature_key = \"plain:not-the-key\"", "").await;
        let (status, answer) = post(&wrong, &body, &[]).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(answer["success"], false);
        let hint = answer["root"].as_str().unwrap();
        assert!(hint.contains("hookbridge dms verify"), "{name}: {answer}");
        // The command it names is one that works: the key never goes on the command line.
        assert!(
            !hint.contains("--key") && hint.contains("DMS_SIGNATURE_KEY"),
            "{hint}"
        );
    }
}

#[tokio::test]
async fn a_pinned_construction_is_the_only_one_accepted() {
    let pinned = "signature_key = \"plain:dms-secret\"\nsignature_variant = \"B/sorted/url\"";
    let h = harness(None, pinned, "").await;
    let (status, answer) = post(&h, &fixture("dms-approval-pending.json"), &[]).await;
    assert_eq!(status, 401, "signed with A, pinned to B");
    assert!(
        answer["root"]
            .as_str()
            .unwrap()
            .contains("pinned to B/sorted/url"),
        "{answer}"
    );
    let b = approval_signed(&hmac_b64(
        "dms-secret",
        &format!("{URL}{}", canonical_event()),
    ));
    ok(post(&h, &b, &[]).await);
}

#[tokio::test]
async fn the_vendor_test_message_matches_no_construction() {
    // Its key is unknown: enforce rejects it in DMS's format, log accepts it.
    let body = fixture("dms-test-message.json");
    let enforce = harness(None, "signature_key = \"plain:dms-secret\"", "").await;
    let (status, answer) = post(&enforce, &body, &[]).await;
    assert_eq!((status, answer["success"].clone()), (401, json!(false)));
    let mut log = harness(
        None,
        "signature_key = \"plain:dms-secret\"\nsignature_mode = \"log\"",
        "",
    )
    .await;
    ok(post(&log, &body, &[]).await);
    assert!(
        log.drain().await.is_empty(),
        "the Test button's message is acknowledged, not delivered"
    );
    let forward = harness(
        None,
        "signature_key = \"plain:dms-secret\"\nsignature_mode = \"log\"",
        "forward_test = true",
    )
    .await;
    ok(post(&forward, &body, &[]).await);
    let all = forward.app.store.recent(10).await.unwrap();
    assert_eq!(
        all.len(),
        1,
        "forwarded: one report, since its uids have no mapping"
    );
    assert_eq!(all[0].status, Status::Skipped);
    assert!(
        all[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("167382665015xxxx, 167382665016xxxx")
    );
}

#[tokio::test]
async fn unsigned_requests_pass_without_a_key_and_not_when_one_is_enforced() {
    let mut unsigned: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    for method in [json!("None"), json!("NONE"), json!(""), Value::Null] {
        unsigned["signatureMethod"] = method.clone();
        ok(post(&harness(None, "", "").await, &unsigned.to_string(), &[]).await);
        let enforce = harness(None, "signature_key = \"plain:dms-secret\"", "").await;
        let (status, answer) = post(&enforce, &unsigned.to_string(), &[]).await;
        assert_eq!(status, 401, "{method}");
        assert!(
            answer["root"].as_str().unwrap().contains("签名方式"),
            "{answer}"
        );
    }
    unsigned["signatureMethod"] = json!("hmac_sha1");
    ok(post(
        &harness(None, "signature_key = \"plain:dms-secret\"", "").await,
        &unsigned.to_string(),
        &[],
    )
    .await);
}

#[tokio::test]
async fn basic_auth_is_checked_when_configured() {
    let basic = "[sources.dms.basic_auth]\nuser = \"dms\"\npassword = \"plain:s3cret\"";
    let h = harness(None, "", basic).await;
    let auth = |u: &str| format!("Basic {}", BASE64.encode(u));
    ok(post(
        &h,
        &fixture("dms-approval-pending.json"),
        &[("authorization", &auth("dms:s3cret"))],
    )
    .await);
    for bad in [
        Some(auth("dms:wrong")),
        Some(auth("dms")),
        Some("Bearer x".to_owned()),
        None,
    ] {
        let headers: Vec<(&str, &str)> =
            bad.iter().map(|b| ("authorization", b.as_str())).collect();
        let (status, answer) = post(&h, &fixture("dms-approval-pending.json"), &headers).await;
        assert_eq!(
            (status, answer["success"].clone()),
            (401, json!(false)),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn garbled_bodies_get_a_clear_400_in_dms_format_and_401_when_a_key_is_enforced() {
    let unsigned = harness(None, "", "").await;
    let enforcing = harness(None, "signature_key = \"plain:dms-secret\"", "").await;
    for (body, want) in [
        ("", "not valid JSON"),
        ("[]", "must be a JSON object, not an array"),
        (
            r#"{"signatureMethod":"None"}"#,
            "missing field `messageEvent`",
        ),
        (
            r#"{"messageEvent":"x"}"#,
            "messageEvent must be a JSON object, not a string",
        ),
        (r#"{"messageEvent":{"receivers":"x"}}"#, "field receivers"),
        (
            r#"{"messageEvent":{"receivers":[{"uid":{}}]}}"#,
            "field receivers[0].uid",
        ),
        (
            r#"{"messageEvent":{"eventTime":"soon"}}"#,
            "yyyy-MM-dd HH:mm:ss",
        ),
        (r#"{"messageEvent":{"a":1,"a":1}}"#, "twice in one object"),
    ] {
        let (status, answer) = post(&unsigned, body, &[]).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["success"], false);
        assert!(
            answer["root"].as_str().unwrap().contains(want),
            "{body}: {answer}"
        );
        // With a key enforced, what cannot be verified is refused as unauthenticated.
        let (status, answer) = post(&enforcing, body, &[]).await;
        assert_eq!(status, 401, "enforcing: {body}: {answer}");
    }
}

#[tokio::test]
async fn a_resent_event_is_one_delivery_set_however_it_is_formatted() {
    let h = harness(None, "", "").await;
    let mut v: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    v["signatureMethod"] = json!("None");
    ok(post(
        &h,
        &serde_json::to_string_pretty(&v).unwrap(),
        &[("content-type", "text/plain")],
    )
    .await);
    ok(post(&h, &v.to_string(), &[]).await);
    assert_eq!(h.app.store.recent(10).await.unwrap().len(), 1);
    v["messageEvent"]["event"] = json!("执行成功");
    ok(post(&h, &v.to_string(), &[]).await);
    assert_eq!(
        h.app.store.recent(10).await.unwrap().len(),
        2,
        "a different event is new"
    );
}

// ---- forgeries ----

/// Every forgery is refused with 401 in DMS's format by `serve`, and only the genuine request
/// reaches the fake DingTalk and ZenTao.
#[tokio::test]
async fn forged_requests_are_refused_by_serve_and_nothing_forged_is_delivered() {
    use hookbridge::local::Local;
    use hookbridge_tests::fake_zentao::{FakeZenTao, instance};
    use hookbridge_tests::forgeries::{self, FORGED};

    let fake = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    let extra = format!(
        r#"{}
{}
[[routes]]
source = "dms"
connector = "zentao"

[recipients.zentao.map]
"{LISI}" = "lisi"
"#,
        dms(&format!("signature_key = \"plain:{}\"", forgeries::KEY), ""),
        instance(&zentao.url)
    );
    let local = Local::start(config(Some(&fake.url), &extra)).await.unwrap();
    let client = hookbridge_tests::http_client();
    let url = format!("http://{}/dms", local.addr);
    for (name, body) in forgeries::forgeries() {
        let resp = client.post(&url).body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, 401, "{name}: {answer}");
        assert_eq!(answer["success"], false, "{name}");
        assert!(!answer["root"].as_str().unwrap().is_empty(), "{name}");
    }
    let resp = client
        .post(&url)
        .body(forgeries::genuine())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..200 {
        if fake.tasks().len() == 1 && zentao.calls("sendNotification").len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 1, "only the genuine request is delivered");
    assert!(!tasks[0].content.to_string().contains(FORGED));
    let notices = zentao.calls("sendNotification");
    assert_eq!(notices.len(), 1);
    assert!(!notices[0].body.to_string().contains(FORGED));
    assert_eq!(local.app.store.recent(100).await.unwrap().len(), 2);
}

/// Flip every bit of a validly signed request, one at a time: whatever is still accepted must
/// parse to exactly the event that was signed.
#[test]
fn no_single_bit_flip_gets_a_different_event_past_the_signature() {
    use hookbridge::sources::dms::{DmsSource, SignatureCheck, SignatureMode};
    use hookbridge::sources::{Head, Source, Verify};
    use hookbridge_tests::forgeries;

    for pinned in [None, Some("A/sorted")] {
        let source = DmsSource::new(
            Some(SignatureCheck {
                key: forgeries::KEY.into(),
                mode: SignatureMode::Enforce,
                url: None,
                pinned: pinned.map(str::to_owned),
            }),
            None,
            1 << 20,
            false,
        );
        let body = forgeries::genuine().into_bytes();
        let headers = http::HeaderMap::new();
        let head = Head {
            path: "/dms",
            headers: &headers,
            peer: None,
        };
        let original = source.parse(&head, &body, 0, Verify::Yes).unwrap();
        let (mut accepted, mut flips) = (0, 0);
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut flipped = body.clone();
                flipped[i] ^= 1 << bit;
                flips += 1;
                if let Ok(p) = source.parse(&head, &flipped, 0, Verify::Yes) {
                    accepted += 1;
                    assert_eq!(p.len(), 1);
                    assert_eq!(p[0].notice, original[0].notice, "byte {i} bit {bit}");
                    assert_eq!(p[0].event.key, original[0].event.key, "byte {i} bit {bit}");
                }
            }
        }
        assert!(flips > 4000, "{flips}");
        // Case changes of "HMAC_SHA1" are the harmless flips that remain.
        assert!(accepted < 20, "{accepted} of {flips} flips accepted");
    }
}
