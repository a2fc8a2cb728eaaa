//! CPU time of one HAP webhook with a huge target list (parse, de-duplicate, route, render;
//! the in-memory store), to show the work grows linearly with the targets. Prints figures.
//!
//! cargo run --release -p hookbridge-tests --example recipients

use std::time::Instant;

use hookbridge_tests::{Harness, config};

fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system time in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut cfg = config(None, "");
    cfg.sources.hap.as_mut().unwrap().max_body_bytes = 4 << 20;
    let h = Harness::new(cfg).await;
    for total in [5_000usize, 25_000, 100_000] {
        let targets: Vec<String> = (0..total).map(|i| format!("u{}", i % 5_000)).collect();
        let body = serde_json::json!({"messageId": format!("m{total}"), "message": "m", "targets": targets})
            .to_string();
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let resp = h.post("/hap/message", &body).await;
        println!(
            "{total:>7} targets (5,000 distinct): HTTP {}  {:.3} s CPU  {:.3} s wall",
            resp.status.as_u16(),
            cpu_seconds() - cpu,
            wall.elapsed().as_secs_f64()
        );
    }
}
