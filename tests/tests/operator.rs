//! What an operator does with deliveries, through a running serve's endpoints against the fake
//! DingTalk and ZenTao: list with filters, show one, replay the dead (a new budget, the record
//! says so), recall the sent (DingTalk within 24 h, noted on the delivery either way).

use std::time::Duration;

use hookbridge::event::{Delivery, Status};
use hookbridge::local::Local;
use hookbridge::operator::{self, OperatorError};
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_zentao::{FakeZenTao, hap_route};
use hookbridge_tests::{HAP_TOKEN, config, fixture};
use serde_json::Value;

const SEND: &str = "/topapi/message/corpconversation/asyncsend_v2";
const RECALL: &str = "/topapi/message/corpconversation/recall";

async fn start(fake: &FakeDingTalk, zentao: &FakeZenTao) -> (Local, String, reqwest::Client) {
    let extra = format!("{}\n[delivery]\nmax_attempts = 2\n", hap_route(&zentao.url));
    let local = Local::start(config(Some(&fake.url), &extra)).await.unwrap();
    let base = format!("http://{}", local.addr);
    (local, base, hookbridge_tests::http_client())
}

async fn post_mention(client: &reqwest::Client, base: &str) {
    let resp = client
        .post(format!("{base}/hap/message"))
        .header("X-Hookbridge-Token", HAP_TOKEN)
        .header("content-type", "application/json")
        .body(fixture("hap-message-mention.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// `GET /deliveries` with `query` until `done` holds of the list (bounded: 10 s).
async fn until(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    for _ in 0..200 {
        let list: Vec<Delivery> = client
            .get(format!("{base}/deliveries?{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries ({query}) did not come to what was expected");
}

async fn act(client: &reqwest::Client, base: &str, action: &str, id: &str) -> (u16, Value) {
    let req = match action {
        "show" => client.get(format!("{base}/deliveries/show")),
        _ => client
            .post(format!("{base}/deliveries/{action}"))
            .json(&serde_json::json!({})),
    };
    let resp = req.query(&[("id", id)]).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A running serve after one HAP message: its DingTalk delivery dead for a reason a person
/// can fix (the app's IP whitelist), its ZenTao one sent.
struct DeadAndSent {
    fake: FakeDingTalk,
    _zentao: FakeZenTao,
    local: Local,
    base: String,
    client: reqwest::Client,
    dead: Delivery,
    sent: Delivery,
}

async fn dead_and_sent() -> DeadAndSent {
    let fake = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    fake.inject(
        SEND,
        200,
        r#"{"errcode":60020,"errmsg":"访问ip不在白名单之中"}"#,
        1,
    );
    let (local, base, client) = start(&fake, &zentao).await;
    post_mention(&client, &base).await;
    let dead = until(&client, &base, "status=dead", |l| l.len() == 1).await;
    let sent = until(&client, &base, "status=sent&connector=zentao", |l| {
        l.len() == 1
    })
    .await;
    DeadAndSent {
        fake,
        _zentao: zentao,
        local,
        base,
        client,
        dead: dead[0].clone(),
        sent: sent[0].clone(),
    }
}

fn id(d: &Delivery) -> String {
    format!("{}/{}", d.pk, d.sk)
}

#[tokio::test]
async fn a_dead_delivery_is_replayed_with_a_new_budget_and_the_record_says_so() {
    // Bound whole: serve stops when its `Local` is dropped.
    let DeadAndSent {
        fake,
        _zentao,
        local: _local,
        base,
        client,
        dead,
        sent,
    } = dead_and_sent().await;
    let (dead, sent) = ([dead], [sent]);
    assert_eq!(dead[0].connector, "dingtalk");
    assert_eq!(sent[0].source(), "hap");
    assert!(
        until(&client, &base, "source=dms", |_| true)
            .await
            .is_empty(),
        "the source filter"
    );

    let (status, replayed) = act(&client, &base, "replay", &id(&dead[0])).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replays"][0]["attempts"], 1);
    assert!(
        replayed["replays"][0]["error"]
            .as_str()
            .unwrap()
            .contains("60020")
    );
    let now_sent = until(&client, &base, "status=sent&connector=dingtalk", |l| {
        l.len() == 1
    })
    .await;
    assert_eq!(now_sent[0].attempts, 1, "a fresh budget: its first attempt");
    assert_eq!(now_sent[0].replays.len(), 1);
    assert_eq!(fake.calls(SEND).len(), 2, "one failed send, one replayed");

    let (status, again) = act(&client, &base, "replay", &id(&dead[0])).await;
    assert_eq!(status, 409, "{again}");
    assert!(again["error"].as_str().unwrap().contains("only dead"));
    let (status, shown) = act(&client, &base, "show", &id(&dead[0])).await;
    assert_eq!((status, &shown["status"]), (200, &Value::from("sent")));
    let (status, _) = act(&client, &base, "show", "EVT#hap#none/DLV#dingtalk#000").await;
    assert_eq!(status, 404);
    let (status, bad) = act(&client, &base, "replay", "not-an-id").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("<pk>/<sk>"));
    let resp = client
        .get(format!("{base}/deliveries?status=gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        400,
        "an unknown status is refused, not ignored"
    );
}

#[tokio::test]
async fn a_sent_message_is_recalled_within_24_hours_and_the_record_says_so() {
    let fake = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    let (local, base, client) = start(&fake, &zentao).await;
    post_mention(&client, &base).await;
    let sent = until(&client, &base, "status=sent", |l| l.len() == 2).await;
    let dingtalk = sent.iter().find(|d| d.connector == "dingtalk").unwrap();
    let zentao_d = sent.iter().find(|d| d.connector == "zentao").unwrap();

    // A day and more after the send: refused without calling DingTalk, and noted.
    let later = dingtalk.updated_at + 25 * 3_600_000;
    let err = operator::recall(&local.app, &dingtalk.key(), later)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OperatorError::Failed(m) if m.contains("within 24 h")),
        "{err}"
    );
    assert!(fake.calls(RECALL).is_empty(), "no call outside the window");
    let d = operator::show(local.app.store.as_ref(), &dingtalk.key())
        .await
        .unwrap();
    assert_eq!(d.receipts[0]["status"], "recall_failed");
    assert_eq!(d.status, Status::Sent, "a failed recall leaves it sent");

    let (status, recalled) = act(&client, &base, "recall", &id(dingtalk)).await;
    assert_eq!(status, 200, "{recalled}");
    assert_eq!(recalled["status"], "recalled", "{recalled}");
    let task_id = dingtalk.result.as_ref().unwrap()["task_id"]
        .as_i64()
        .unwrap();
    let calls = fake.calls(RECALL);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["msg_task_id"], task_id);
    assert!(
        fake.tasks()
            .iter()
            .any(|t| t.task_id == task_id && t.recalled)
    );
    let note = &recalled["receipts"][1];
    assert_eq!(
        (&note["status"], &note["by"]),
        (&"recalled".into(), &"operator".into())
    );
    // Recalled already: refused with when, and DingTalk is not asked again.
    let (status, again) = act(&client, &base, "recall", &id(dingtalk)).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"].as_str().unwrap().contains("was recalled at"),
        "{again}"
    );
    assert_eq!(fake.calls(RECALL).len(), 1);

    // ZenTao has no recall API: refused with the reason, and noted.
    let (status, refused) = act(&client, &base, "recall", &id(zentao_d)).await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("no API"));
    let (_, shown) = act(&client, &base, "show", &id(zentao_d)).await;
    assert_eq!(shown["receipts"][0]["status"], "recall_failed");
    assert_eq!(shown["status"], "sent");
}

/// A web page in the operator's browser cannot make `serve` act, nor read it by pointing its
/// own name at 127.0.0.1 (DNS rebinding): without the operator token the `Host` must be this
/// server's, and a change must be JSON with no `Origin` or this server's own.
#[tokio::test]
async fn a_web_page_cannot_replay_recall_or_read_through_the_operators_browser() {
    let DeadAndSent {
        fake,
        _zentao,
        local,
        base,
        client,
        dead,
        sent,
    } = dead_and_sent().await;
    let (dead, sent) = ([dead], [sent]);
    let own = local.addr.to_string();
    let send = |method: reqwest::Method, path: &str, id: &str, headers: &[(&str, &str)]| {
        let mut req = client
            .request(method, format!("{base}{path}"))
            .query(&[("id", id)]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let form = [
        ("host", "evil.example"),
        ("origin", "http://evil.example"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let post = reqwest::Method::POST;
    // The attack as seen: a hostile Host and Origin, a form post.
    for path in ["/deliveries/replay", "/deliveries/recall"] {
        for (victim, headers) in [
            (&dead[0], &form[..]),
            // Rebinding: the page's name resolved to 127.0.0.1, sent as JSON.
            (
                &dead[0],
                &[
                    ("host", "evil.example:80"),
                    ("content-type", "application/json"),
                ][..],
            ),
            // The right Host, but a form: any page can send one.
            (
                &sent[0],
                &[("host", own.as_str()), ("content-type", "text/plain")][..],
            ),
            // The right Host and JSON, but another site's page.
            (
                &sent[0],
                &[
                    ("host", own.as_str()),
                    ("content-type", "application/json"),
                    ("origin", "http://evil.example"),
                ][..],
            ),
            (
                &sent[0],
                &[
                    ("host", own.as_str()),
                    ("content-type", "application/json"),
                    ("origin", "null"),
                ][..],
            ),
        ] {
            let resp = send(post.clone(), path, &id(victim), headers)
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                status == 403 || status == 415,
                "{path} {headers:?}: {status}"
            );
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string(), "a JSON answer: {body}");
        }
    }
    let get = reqwest::Method::GET;
    let read = send(
        get.clone(),
        "/deliveries/show",
        &id(&dead[0]),
        &[("host", "evil.example:3000")],
    )
    .await
    .unwrap();
    assert_eq!(read.status(), 403, "a rebound name reads nothing");
    let list = client
        .get(format!("{base}/deliveries"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 403);
    // Nothing happened: the dead delivery is still dead, nothing was recalled.
    assert_eq!(fake.calls(SEND).len(), 1);
    assert!(fake.calls(RECALL).is_empty());
    let (status, still) = act(&client, &base, "show", &id(&dead[0])).await;
    assert_eq!((status, &still["status"]), (200, &Value::from("dead")));
    // The operator's own page (same origin) and the CLI (no Origin) may act.
    let same = format!("http://{own}");
    let headers = [
        ("content-type", "application/json"),
        ("origin", same.as_str()),
    ];
    let resp = send(post, "/deliveries/replay", &id(&dead[0]), &headers)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let localhost = format!("localhost:{}", local.addr.port());
    let resp = send(
        get,
        "/deliveries/show",
        &id(&dead[0]),
        &[("host", &localhost)],
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "localhost is this server too");
}
