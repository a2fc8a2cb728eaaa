//! How long the console's pages take with 100,000 deliveries in `serve`'s store (the in-memory
//! one the data file loads into): the overview (a week's counts), a filtered page of
//! deliveries, the last page, and the events. Each request goes through the console's router as
//! a browser's would. Prints figures.
//!
//! cargo run --release -p hookbridge-tests --example console_load

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use hookbridge::console::{self, Guard};
use hookbridge::event::{Action, Delivery, Event, Settled, Status, now_ms};
use hookbridge_tests::{Harness, config};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let h = Harness::new(config(None, "")).await;
    let store = h.app.store.clone();
    let now = now_ms();
    let (events, per_event) = (1_011, 99);
    for e in 0..events {
        let event = Event {
            source: "hap".into(),
            key: format!("load-{e:05}"),
            kind: "todo".into(),
            received_at: now - e as i64 * 1_000,
            payload: serde_json::json!({}),
            raw: format!("{{\"messageId\":\"load-{e:05}\"}}"),
        };
        let deliveries: Vec<Delivery> = (0..per_event)
            .map(|i| {
                Delivery::new(
                    &event.pk(),
                    "dingtalk",
                    i,
                    Action::Send,
                    vec![format!("u{i}")],
                    serde_json::json!({ "msg": { "text": "审批" } }),
                    event.received_at,
                )
            })
            .collect();
        store.insert(&event, &deliveries).await.unwrap();
        // Every hundredth one dead, the rest sent.
        for (i, d) in deliveries.iter().enumerate() {
            let c = store
                .claim(&d.key(), now, now + 1_000)
                .await
                .unwrap()
                .unwrap();
            let dead = (e * per_event + i) % 100 == 0;
            let settled = Settled {
                status: if dead { Status::Dead } else { Status::Sent },
                attempts: c.attempts,
                result: None,
                last_error: dead.then(|| "errcode 60020".into()),
                next_attempt_at: None,
            };
            store.record(&c, &settled, now).await.unwrap();
        }
    }
    let total = store.recent(usize::MAX).await.unwrap().len();
    let addr: SocketAddr = "127.0.0.1:8788".parse().unwrap();
    let routes = console::router(h.app.clone(), Guard::local(addr), None);
    println!("{total} deliveries of {events} events in the store");
    for path in [
        "/console",
        "/console/deliveries",
        "/console/deliveries?status=dead",
        "/console/deliveries?page=2000",
        "/console/events",
    ] {
        let mut took = vec![];
        for _ in 0..5 {
            let req = http::Request::get(path)
                .header("host", "127.0.0.1:8788")
                .extension(axum::extract::ConnectInfo(addr))
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let resp = routes.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
            took.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(status.is_success(), "{path}: {status}");
        }
        took.sort_by(f64::total_cmp);
        println!("{path:<36} median {:>7.1} ms (5 requests)", took[2]);
    }
}
