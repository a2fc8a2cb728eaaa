//! Deliveries per second per connector through `hookbridge serve`'s wiring (HTTP server, store,
//! senders, sweeper) against the fake DingTalk and ZenTao on 127.0.0.1. Prints figures; asserts
//! nothing, so a busy machine cannot make it flake.
//!
//! cargo run --release -p hookbridge-tests --example throughput -- [deliveries]
//!
//! 1. throttled: the fake DingTalk answers 90018 above 10 calls per second.
//! 2. DingTalk outage: every DingTalk call takes 1 s and fails with HTTP 502; how fast does ZenTao
//!    still get its notices?

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hookbridge::event::Status;
use hookbridge::local::Local;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_zentao::{FakeZenTao, hap_route};
use hookbridge_tests::{HAP_TOKEN, config};

fn extra(zentao: &str) -> String {
    format!(
        "{}\n[delivery]\nbackoff_base_secs = 1\nbackoff_cap_secs = 4\n",
        hap_route(zentao)
    )
}

struct Figures {
    per_connector: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Seconds from the first webhook to the last final delivery, per connector.
    seconds: BTreeMap<String, f64>,
}

async fn run(n: usize, fake: &FakeDingTalk, zentao: &FakeZenTao, limit: Duration) -> Figures {
    let local = Local::start(config(Some(&fake.url), &extra(&zentao.url)))
        .await
        .expect("serve starts");
    let base = format!("http://{}", local.addr);
    let client = hookbridge_tests::http_client();
    let started = Instant::now();
    let t0 = hookbridge::event::now_ms();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, url, permits) = (
            client.clone(),
            format!("{base}/hap/message"),
            permits.clone(),
        );
        posts.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let body = serde_json::json!({
                "messageId": format!("throughput-{i}"),
                "message": format!("第 {i} 条通知"),
                "messageTypeV2": 11,
                "appName": "吞吐",
                "targets": ["lisi"],
            });
            client
                .post(url)
                .header("X-Hookbridge-Token", HAP_TOKEN)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok()
        });
    }
    while let Some(r) = posts.join_next().await {
        assert_eq!(r.unwrap(), Some(200), "webhook accepted");
    }
    loop {
        let all = local.app.store.recent(100_000).await.unwrap();
        let done = all.len() >= 2 * n && all.iter().all(|d| d.status.is_final());
        if done || started.elapsed() > limit {
            let mut per_connector: BTreeMap<String, BTreeMap<&'static str, usize>> =
                BTreeMap::new();
            let mut last: BTreeMap<String, i64> = BTreeMap::new();
            for d in &all {
                let status = if d.status.is_final() {
                    d.status.as_str()
                } else {
                    "unfinished"
                };
                *per_connector
                    .entry(d.connector.clone())
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                if d.status == Status::Sent {
                    let l = last.entry(d.connector.clone()).or_default();
                    *l = (*l).max(d.updated_at);
                }
            }
            let seconds = last
                .into_iter()
                .map(|(c, at)| (c, (at - t0) as f64 / 1000.0))
                .collect();
            return Figures {
                per_connector,
                seconds,
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print(name: &str, f: &Figures) {
    println!("{name}");
    for (connector, counts) in &f.per_connector {
        let sent = counts.get("sent").copied().unwrap_or(0);
        let secs = f.seconds.get(connector).copied().unwrap_or(f64::NAN);
        println!(
            "  {connector:<9} {counts:?}  {:.1} deliveries/s (last sent after {secs:.1} s)",
            sent as f64 / secs
        );
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(460);

    let fake = FakeDingTalk::start().await;
    fake.set_qps_limit(10);
    let zentao = FakeZenTao::start().await;
    let f = run(n, &fake, &zentao, Duration::from_secs(240)).await;
    print(
        &format!("throttled: {n} HAP messages, DingTalk limited to 10 QPS"),
        &f,
    );

    let fake = FakeDingTalk::start().await;
    fake.set_latency(Duration::from_secs(1));
    for path in ["/gettoken", "/topapi/message/corpconversation/asyncsend_v2"] {
        fake.inject(path, 502, "", 100_000);
    }
    let zentao = FakeZenTao::start().await;
    let m = (n / 4).max(1);
    let f = run(m, &fake, &zentao, Duration::from_secs(60)).await;
    print(
        &format!("DingTalk outage: {m} HAP messages, every DingTalk call 1 s then HTTP 502"),
        &f,
    );
}
