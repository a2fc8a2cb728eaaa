//! The first thing an operator tries: a HAP to-do posted to `hookbridge serve` over HTTP becomes a
//! WeCom button card and a Feishu card, and each turns 已处理 when HAP's finish arrives.

use std::time::Duration;

use hookbridge::local::Local;
use hookbridge_tests::fake_feishu::{self, FakeFeishu};
use hookbridge_tests::fake_wecom::{self, FakeWeCom};
use hookbridge_tests::{HAP_TOKEN, config, fixture, http_client};

/// Waits (at most 20 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hap_todo_turns_done_in_wecom_and_feishu_through_serve() {
    let wecom = FakeWeCom::start().await;
    let feishu = FakeFeishu::start().await;
    let extra = format!(
        "{}{}",
        fake_wecom::hap_route(&wecom.url),
        fake_feishu::hap_route(&feishu.url)
    );
    let local = Local::start(config(None, &extra)).await.unwrap();
    let client = http_client();
    let post = |path: &str, name: &str| {
        client
            .post(format!("http://{}{path}", local.addr))
            .header("x-hookbridge-token", HAP_TOKEN)
            .header("content-type", "application/json")
            .body(fixture(name))
            .send()
    };
    assert_eq!(
        post("/hap/message", "hap-message-todo.json")
            .await
            .unwrap()
            .status(),
        200
    );
    until("a WeCom card and two Feishu cards", || {
        wecom.shown().len() == 1 && feishu.shown().len() == 2
    })
    .await;
    assert_eq!(
        post("/hap/todo", "hap-finish-todo.json")
            .await
            .unwrap()
            .status(),
        200
    );
    until("every card turned", || {
        wecom.shown()[0].replaced.is_some() && feishu.shown().iter().all(|c| c.patches == 1)
    })
    .await;
    assert_eq!(wecom.shown()[0].replaced.as_deref(), Some("已处理"));
    for card in feishu.shown() {
        assert_eq!(card.content["header"]["template"], "green");
    }
    local.shutdown().await;
}
