//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{dynamo_store, events, fixture, lambda_env};
use serde_json::Value;

const GITLAB: &str = r#"
[sources.generic.gitlab]
token_header = "X-Gitlab-Token"
token = "plain:gl-token"
id = "/checkout_sha"
kind = "/object_kind"
recipients = "/user_username"

[[routes]]
source = "generic"
connector = "dingtalk"
kinds = ["push"]
"#;

fn post(path: &str, body: &str, token: &str) -> Value {
    let mut request = events::apigw_v2(path, body, None, false);
    request["headers"]["x-gitlab-token"] = token.into();
    request
}

async fn answer(env: &[(&str, String)], request: Value) -> (u64, Value) {
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_generic-webhook"), env, request).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    (r["statusCode"].as_u64().unwrap(), body)
}

/// A GitLab push at its instance's path: stored once under its commit, to the pusher; a
/// redelivery is a duplicate; a wrong token and an unknown instance are refused.
#[tokio::test]
async fn a_gitlab_push_through_the_function() {
    let store = dynamo_store().await;
    let env = lambda_env(store.table(), None, GITLAB);
    let push = fixture("generic-gitlab-push.json");
    let (status, body) = answer(&env, post("/in/gitlab", &push, "gl-token")).await;
    assert_eq!(
        (status, &body["ok"], &body["deliveries"]),
        (200, &true.into(), &1.into()),
        "{body}"
    );
    let stored = store.recent(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].recipients, ["jsmith"]);
    let (status, body) = answer(&env, post("/in/gitlab", &push, "gl-token")).await;
    assert_eq!((status, &body["duplicate"]), (200, &true.into()), "{body}");
    let (status, body) = answer(&env, post("/in/gitlab", &push, "guess")).await;
    assert_eq!((status, &body["ok"]), (401, &false.into()), "{body}");
    let (status, _) = answer(&env, post("/in/github", &push, "gl-token")).await;
    assert_eq!(status, 404);
}
