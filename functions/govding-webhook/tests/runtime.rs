//! This binary, run as Lambda runs it, against DynamoDB Local: the gateway's callbacks in both
//! encodings, Base64 from API Gateway, the path token and the source-IP allow-list.
use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{dynamo_store, events, fixture, lambda_env};
use serde_json::Value;

use hookbridge_tests::GOVDING_PATH_TOKEN as TOKEN;
const OK: &str = r#"{"errcode":"0","errmsg":"成功"}"#;

fn config(allow: &str) -> String {
    format!(
        r#"
[sources.govding]
path_token = "plain:{TOKEN}"
allow_ips = [{allow}]

[[routes]]
source = "govding"
connector = "dingtalk"
users = ["ops1"]
"#
    )
}

async fn call(env: &[(&str, String)], path: &str, body: &str, base64: bool) -> (Value, String) {
    let request = events::apigw_v2(path, body, None, base64);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_govding-webhook"), env, request).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    (r, logs)
}

#[tokio::test]
async fn callbacks_in_either_encoding_are_acknowledged_once() {
    let store = dynamo_store().await;
    let mut env = lambda_env(store.table(), None, &config(""));
    // Every log line at every level is searched for the path token (and every other secret).
    env.push(("AWS_LAMBDA_LOG_LEVEL", "TRACE".into()));
    let path = format!("/govding/{TOKEN}");

    let (r, logs) = call(&env, &path, &fixture("govding-register-check.json"), false).await;
    assert_eq!(
        (r["statusCode"].as_i64(), r["body"].as_str()),
        (Some(200), Some(OK)),
        "{logs}"
    );
    // At TRACE, but never the runtime's raw event (its path holds the token).
    assert!(logs.contains("TRACE"), "{logs}");
    assert!(!logs.contains("raw JSON event"), "{logs}");
    assert!(
        store.recent(10).await.unwrap().is_empty(),
        "the check delivers nothing"
    );

    let leave = fixture("govding-employee-leave.json");
    let (r, logs) = call(&env, &path, &leave, false).await;
    assert_eq!(r["body"].as_str(), Some(OK), "{logs}");
    let sent = store.recent(10).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipients, ["ops1"]);

    // The gateway retries: the same event, form-encoded and Base64 as API Gateway passes it.
    let (r, logs) = call(&env, &path, &fixture("govding-employee-leave.form"), true).await;
    assert_eq!(r["body"].as_str(), Some(OK), "{logs}");
    assert_eq!(
        store.recent(10).await.unwrap().len(),
        1,
        "a duplicate adds nothing"
    );

    // A receipt is bookkeeping: the route names no kinds, so it does not take it.
    let (r, _) = call(
        &env,
        &path,
        &fixture("govding-notification-read.json"),
        false,
    )
    .await;
    assert_eq!(r["body"].as_str(), Some(OK));
    assert_eq!(store.recent(10).await.unwrap().len(), 1);

    let (r, _) = call(&env, &path, "not a callback at all", false).await;
    assert_eq!(
        r["body"].as_str(),
        Some(OK),
        "unreadable bodies are stored and acknowledged"
    );
}

#[tokio::test]
async fn a_wrong_token_or_address_is_refused() {
    let store = dynamo_store().await;
    let open = lambda_env(store.table(), None, &config(""));
    let leave = fixture("govding-employee-leave.json");
    for path in [
        "/govding/wrong-token",
        "/govding/",
        "/govding/gw-path-token-012345678",
    ] {
        let (r, _) = call(&open, path, &leave, false).await;
        assert_eq!(
            (r["statusCode"].as_i64(), r["body"].as_str()),
            (Some(404), Some("")),
            "{path}"
        );
    }
    let path = format!("/govding/{TOKEN}");
    // The test event comes from 10.1.2.3.
    let fenced = lambda_env(store.table(), None, &config("\"203.0.113.7\""));
    let (r, _) = call(&fenced, &path, &leave, false).await;
    assert_eq!(
        (r["statusCode"].as_i64(), r["body"].as_str()),
        (Some(404), Some("")),
        "answered like a wrong token"
    );
    assert!(store.recent(10).await.unwrap().is_empty(), "nothing stored");
    // A range, as the stack's own parameters write them.
    let admitted = lambda_env(store.table(), None, &config("\"10.1.0.0/16\""));
    let (r, _) = call(&admitted, &path, &leave, false).await;
    assert_eq!(r["body"].as_str(), Some(OK));
}

/// Behind the static-IP front the function is invoked by an ALB: the same answers, and the
/// allow-list reads the address the ALB saw (the last X-Forwarded-For entry, not one a client
/// put first).
#[tokio::test]
async fn the_static_ip_front_invokes_it_through_an_alb() {
    let store = dynamo_store().await;
    let env = lambda_env(store.table(), None, &config("\"203.0.113.7\""));
    let path = format!("/govding/{TOKEN}");
    let leave = fixture("govding-employee-leave.form");
    let call = |forwarded: &str| events::alb(&path, &leave, forwarded);
    let bin = env!("CARGO_BIN_EXE_govding-webhook");
    let (answer, logs) = invoke(bin, &env, call("203.0.113.7")).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(
        (r["statusCode"].as_i64(), r["body"].as_str()),
        (Some(200), Some(OK)),
        "{logs}"
    );
    let (answer, _) = invoke(bin, &env, call("203.0.113.7, 198.51.100.1")).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(r["statusCode"], 404, "a forged first entry does not get in");
    let (answer, _) = invoke(
        bin,
        &env,
        events::alb("/govding/wrong", &leave, "203.0.113.7"),
    )
    .await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(r["statusCode"], 404);
    assert_eq!(store.recent(10).await.unwrap().len(), 1);
}
