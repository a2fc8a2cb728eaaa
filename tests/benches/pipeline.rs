//! CPU per webhook event, without I/O: authenticate, parse, verify the signature, route and
//! render every delivery, for each fixture, on the in-memory store (the first request stores the
//! event; the rest are the same work up to the store's duplicate check).
//!   cargo bench -p hookbridge-tests --bench pipeline
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hookbridge::app::{App, Parts};
use hookbridge::config::Secrets;
use hookbridge::event::now_ms;
use hookbridge::store::memory::MemoryStore;
use hookbridge_tests::{HAP_TOKEN, config, fixture, forgeries, request};

const GOVDING_TOKEN: &str = "gw-path-token-0123456789";

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let extra = format!(
        "[sources.dms]\nsignature_key = \"plain:{}\"\n[sources.govding]\npath_token = \"plain:{GOVDING_TOKEN}\"\n\
         [[routes]]\nsource = \"dms\"\nconnector = \"dingtalk\"\n\
         [[routes]]\nsource = \"govding\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n\
         [recipients.dingtalk.map]\n\"1673826650168842\" = \"lisi\"\n",
        forgeries::KEY
    );
    let app = rt.block_on(async {
        let store = Arc::new(MemoryStore::default());
        Arc::new(
            App::build(config(None, &extra), store, &Secrets::default(), Parts::All)
                .await
                .unwrap(),
        )
    });
    let govding = format!("/govding/{GOVDING_TOKEN}");
    let cases = [
        (
            "hap-message-todo",
            "/hap/message",
            fixture("hap-message-todo.json"),
        ),
        (
            "hap-message-mention",
            "/hap/message",
            fixture("hap-message-mention.json"),
        ),
        (
            "hap-finish-todo",
            "/hap/todo",
            fixture("hap-finish-todo.json"),
        ),
        (
            "dms-approval-pending (signed)",
            "/dms",
            forgeries::genuine(),
        ),
        (
            "govding-employee-leave",
            govding.as_str(),
            fixture("govding-employee-leave.json"),
        ),
    ];
    let mut group = c.benchmark_group("pipeline");
    for (name, path, body) in cases {
        let first = rt.block_on(
            app.ingress
                .handle(request(path, body.clone(), Some(HAP_TOKEN)), now_ms()),
        );
        assert_eq!(first.status, 200, "{name}: {}", first.body);
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(
                    app.ingress
                        .handle(request(path, body.clone(), Some(HAP_TOKEN)), now_ms()),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
