//! The real client: Prometheus Alertmanager 0.25 (Debian's `prometheus-alertmanager`, which
//! `scripts/test` installs when missing) with a webhook receiver pointed at `hookbridge serve`.
//! Alerts go into it through its own API and resolve when their `endsAt` passes; what reaches
//! the fake DingTalk and the fake robot is what Alertmanager's notifications made.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookbridge::local::Local;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::{config, http_client};
use serde_json::{Value, json};

const BINARY: &str = "prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Alertmanager with one webhook receiver at `webhook`, flushing groups every second.
async fn alertmanager(webhook: &str) -> Alertmanager {
    let dir = std::env::temp_dir().join(format!("hookbridge-am-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hookbridge\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hookbridge\n    webhook_configs:\n      - url: {webhook}\n        \
             send_resolved: true\n        http_config:\n          authorization:\n            \
             credentials: am-secret\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(BINARY)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{BINARY}: {e} (apt-get install prometheus-alertmanager; scripts/test does)")
        });
    // Owned at once: dropped (killed and reaped) however the test ends.
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let client = http_client();
    for _ in 0..100 {
        if client
            .get(format!("{}/-/ready", am.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return am;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{BINARY} did not start");
}

/// Between Alertmanager and `serve`: forwards every notification, but answers the first one
/// 503 after `serve` took it, as if the answer were lost on the way. Counts what it forwarded.
async fn losing_first_answer(to: String) -> (String, Arc<AtomicUsize>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/alertmanager",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (to, seen) = (to.clone(), counter.clone());
            async move {
                let mut forward = http_client().post(format!("{to}/alertmanager")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        forward = forward.header(name, value);
                    }
                }
                let answer = forward.send().await.unwrap();
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap();
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "lost".to_owned())
                } else {
                    (StatusCode::from_u16(status).unwrap(), text)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Waits (at most 30 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Two alerts fire in one group: each is one DingTalk card reading 告警中 and one robot post,
/// though the answer to the first notification is lost and Alertmanager sends it again.
/// One resolves: Alertmanager notifies the group again (the other alert repeated, a duplicate
/// here), its card turns 已恢复 and the robot says it resolved. Nothing is sent twice.
#[tokio::test(flavor = "multi_thread")]
async fn firing_and_resolved_alerts_from_a_real_alertmanager() {
    let dingtalk = FakeDingTalk::start().await;
    let robot = FakeRobot::start(true, None).await;
    let team = FakeRobot::start(true, None).await;
    let extra = format!(
        "[sources.alertmanager]\nbearer_tokens = [\"plain:am-secret\"]\n\
         [connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
         [connectors.dingtalk_robot.team]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk\"\nkinds = [\"alert\"]\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk_robot\"\ninstance = \"ops\"\n\
         kinds = [\"alert\", \"resolved\"]\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk_robot\"\ninstance = \"team\"\n\
         kinds = [\"group\"]\n",
        robot.webhook(),
        team.webhook()
    );
    let local = Local::start(config(Some(&dingtalk.url), &extra))
        .await
        .unwrap();
    let (proxy, forwarded) = losing_first_answer(format!("http://{}", local.addr)).await;
    let am = alertmanager(&format!("{proxy}/alertmanager")).await;

    let now = chrono::Utc::now();
    let alert = |instance: &str, ends: chrono::DateTime<chrono::Utc>| {
        json!({
            "labels": { "alertname": "HighLatency", "severity": "critical",
                        "instance": instance, "notify": "ops1" },
            "annotations": { "summary": "接口延迟过高" },
            "startsAt": now.to_rfc3339(),
            "endsAt": ends.to_rfc3339(),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
        })
    };
    let pushed = http_client()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([
            alert("api-1:9100", now + chrono::Duration::seconds(5)),
            alert("api-2:9100", now + chrono::Duration::hours(1)),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);

    until("two cards and two robot posts", || {
        dingtalk.count("asyncsend_v2") == 2 && robot.posted().len() == 2
    })
    .await;
    for send in dingtalk.calls("asyncsend_v2") {
        let oa = &send.body["msg"]["oa"];
        assert_eq!(oa["status_bar"]["status_value"], "告警中", "{}", send.body);
        assert_eq!(send.body["userid_list"], "ops1");
    }
    until("the resolved card turned", || {
        dingtalk.count("status_bar/update") == 1
    })
    .await;
    let bar = &dingtalk.calls("status_bar/update")[0].body;
    assert_eq!(bar["status_value"], "已恢复");
    let resolved_task = dingtalk
        .tasks()
        .into_iter()
        .find(|t| t.task_id == bar["task_id"])
        .expect("the bar of a card that was sent");
    assert_eq!(resolved_task.userids, ["ops1"]);
    until("the robot said it resolved", || robot.posted().len() == 3).await;
    let said = robot.posted()[2].to_string();
    assert!(
        said.contains("已恢复") && said.contains("api-1:9100"),
        "{said}"
    );

    // The first answer was lost: Alertmanager sent that notification again, a duplicate here.
    assert!(
        forwarded.load(Ordering::SeqCst) >= 3,
        "retried, then notified again"
    );
    // Alertmanager keeps notifying the group (the other alert still firing): duplicates.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dingtalk.count("asyncsend_v2"), 2, "each card once");
    assert_eq!(dingtalk.count("status_bar/update"), 1);
    assert_eq!(robot.posted().len(), 3);
    // The team's robot shows the group: once as it fired, once as one alert resolved.
    let groups: Vec<String> = team.posted().iter().map(Value::to_string).collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        groups[0].contains("2 条告警中") && groups[0].contains("api-2:9100"),
        "{}",
        groups[0]
    );
    assert!(
        groups[1].contains("1 条告警中，1 条已恢复"),
        "{}",
        groups[1]
    );
    assert!(
        dingtalk.violations().is_empty(),
        "{:?}",
        dingtalk.violations()
    );
    local.shutdown().await;
}
