//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{alerts_now, dynamo_store, events, lambda_env};
use serde_json::Value;

const ALERTMANAGER: &str = r#"
[sources.alertmanager]
bearer_tokens = ["plain:secret-token"]

[[routes]]
source = "alertmanager"
connector = "dingtalk"
users = ["ops-admin"]
"#;

fn post(body: &str, authorization: &str) -> Value {
    let mut request = events::apigw_v2("/alertmanager", body, None, false);
    request["headers"]["authorization"] = authorization.into();
    request["headers"]["user-agent"] = "Alertmanager/0.25.0".into();
    request
}

async fn answer(env: &[(&str, String)], request: Value) -> (u64, Value) {
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_alertmanager-webhook"), env, request).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    (r["statusCode"].as_u64().unwrap(), body)
}

/// A group of two firing alerts is two cards (and the group's event); Alertmanager's retry of
/// it (or a repeat within the window) stores nothing more; a wrong token is refused in
/// Alertmanager's terms.
#[tokio::test]
async fn stores_each_alert_once_and_refuses_a_wrong_token() {
    let store = dynamo_store().await;
    let env = lambda_env(store.table(), None, ALERTMANAGER);
    let firing = alerts_now("alertmanager-firing.json");
    let (status, body) = answer(&env, post(&firing, "Bearer secret-token")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["status"],
            &body["events"],
            &body["duplicate"],
            &body["deliveries"]
        ),
        // Two alerts and the group (which only routes naming `group` take).
        (&"success".into(), &3.into(), &false.into(), &2.into())
    );
    assert_eq!(store.recent(10).await.unwrap().len(), 2);

    let (status, body) = answer(&env, post(&firing, "Bearer secret-token")).await;
    assert_eq!((status, &body["duplicate"]), (200, &true.into()), "{body}");
    assert_eq!(store.recent(10).await.unwrap().len(), 2);

    let (status, body) = answer(&env, post(&firing, "Bearer guessed")).await;
    assert_eq!((status, &body["status"]), (401, &"error".into()), "{body}");
}
