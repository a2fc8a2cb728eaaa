//! The generic source through `hookbridge serve` over real HTTP: a GitLab push (shared token)
//! and a GitHub-style signed body (HMAC-SHA256 in a header) reach ZenTao through routes'
//! templates over the body; forgeries reach nothing.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use hookbridge::local::Local;
use hookbridge_tests::fake_zentao::{self, FakeZenTao};
use hookbridge_tests::{config, fixture, http_client};
use sha2::Sha256;

fn extra(zentao: &str) -> String {
    format!(
        r#"{}
[sources.generic.gitlab]
token_header = "X-Gitlab-Token"
token = "plain:gl-token"
id = "/checkout_sha"
kind = "/object_kind"
recipients = "/user_username"
link = "/project/web_url"

[sources.generic.ci]
signature_header = "X-Hub-Signature-256"
signature_prefix = "sha256="
secret = "plain:ci-secret"
recipients = "/owners"

[[routes]]
source = "generic"
connector = "zentao"
template = "gitlab_push"
kinds = ["push"]

[[routes]]
source = "generic"
connector = "zentao"
kinds = ["event"]

[recipients.zentao.map]
jsmith = "zhangsan"

[templates.gitlab_push]
title = "{{{{ user_name }}}} 推送到 {{{{ project.name }}}}"
text = "{{{{ total_commits_count }}}} 个提交：{{{{ commits[0].title }}}}"
"#,
        fake_zentao::instance(zentao)
    )
}

fn signature(body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"ci-secret").unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gitlab_push_and_a_signed_ci_event_reach_zentao() {
    let zentao = FakeZenTao::start().await;
    let local = Local::start(config(None, &extra(&zentao.url)))
        .await
        .unwrap();
    let base = format!("http://{}", local.addr);
    let client = http_client();
    // As curl posts a file unless told otherwise: a form's content type, a JSON body.
    let post = |path: &str, body: String, header: (&'static str, String)| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header.0, header.1)
            .body(body)
            .send()
    };

    let push = fixture("generic-gitlab-push.json");
    let r = post(
        "/in/gitlab",
        push.clone(),
        ("X-Gitlab-Token", "gl-token".into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = post(
        "/in/gitlab",
        push.clone(),
        ("X-Gitlab-Token", "guess".into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);

    let event = r#"{"title":"构建失败","text":"main 分支第 812 次构建失败","owners":["lisi"]}"#;
    let forged = event.replace("失败", "成功");
    let r = post("/in/ci", forged, ("X-Hub-Signature-256", signature(event)))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a body the signature does not cover");
    let r = post(
        "/in/ci",
        event.into(),
        ("X-Hub-Signature-256", signature(event)),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let mut sends = vec![];
    for _ in 0..100 {
        sends = zentao.calls("sendNotification");
        if sends.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sends.len(), 2, "{sends:?}");
    let by_title = |t: &str| {
        sends
            .iter()
            .find(|c| c.body["title"] == t)
            .unwrap_or_else(|| panic!("{t}: {sends:?}"))
    };
    let gitlab = by_title("John Smith 推送到 Diaspora");
    assert!(
        gitlab.body["content"]
            .as_str()
            .unwrap()
            .starts_with("1 个提交：修复登录页在 iOS 上的排版问题")
    );
    assert_eq!(gitlab.reached, ["zhangsan"]);
    let ci = by_title("构建失败");
    assert_eq!(ci.reached, ["lisi"]);
    local.shutdown().await;
}
