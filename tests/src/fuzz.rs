//! What each fuzz target does with its input, shared by the libFuzzer targets in `fuzz/` and by
//! `tests/tests/fuzz_regressions.rs`, which replays every input a fuzzer ever found a crash
//! with (`tests/fuzz/<target>/`). Every parser the outside world reaches: the five sources
//! (JSON and form bodies), the connectors' answers (the robots' together), and the config. An input may be
//! refused; it may never panic.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::connectors::{
    dingtalk, dingtalk_robot, feishu_robot, govding, wecom, wecom_robot, zentao,
};
use hookbridge::ingress::Request;
use hookbridge::registry;
use hookbridge::routing::Router;
use hookbridge::store::memory::MemoryStore;
use hookbridge::templates::Templates;

pub const TARGETS: &[&str] = &[
    "hap",
    "dms",
    "govding",
    "alertmanager",
    "generic",
    "dingtalk_answer",
    "govding_answer",
    "zentao_answer",
    "wecom_answer",
    "robot_answer",
    "config",
];

const GOVDING_PATH: &str = "/govding/fuzz-path-token-0123456789";

/// Every source configured, DMS signed in enforce mode, every connector in dry-run.
const CONFIG: &str = r#"
[sources.hap]
tokens = ["plain:fuzz-hap-token"]
[sources.dms]
webhook_url = "https://hookbridge.example.com/dms"
signature_key = "plain:fuzz-dms-key"
signature_mode = "enforce"
[sources.govding]
path_token = "plain:fuzz-path-token-0123456789"
[sources.alertmanager]
bearer_tokens = ["plain:fuzz-am-token"]
[sources.generic.fuzz]
token_header = "X-Fuzz-Token"
token = "plain:fuzz-generic-token"
id = "/id"
kind = "/kind"
recipients = "/to"
link = "/url"
[sources.generic.signed]
signature_header = "X-Signature"
signature_prefix = "sha256="
secret = "plain:fuzz-generic-secret"
[connectors.dingtalk]
agent_id = 1
[connectors.zentao.main]
base_url = "https://zentao.example.com"
code = "hookbridge"
[connectors.govding]
tenant_id = "1"
[[routes]]
source = "hap"
connector = "dingtalk"
[[routes]]
source = "dms"
connector = "zentao"
[[routes]]
source = "govding"
connector = "dingtalk"
users = ["ops"]
[[routes]]
source = "alertmanager"
connector = "dingtalk"
users = ["ops"]
[[routes]]
source = "alertmanager"
connector = "zentao"
users = ["ops"]
[[routes]]
source = "generic"
connector = "dingtalk"
[templates.generic_body]
title = "{{ title }}"
text = "{{ text }}"
[[routes]]
source = "generic"
connector = "zentao"
template = "generic_body"
"#;

struct Fuzz {
    runtime: tokio::runtime::Runtime,
    app: App,
}

fn fuzz() -> &'static Fuzz {
    static FUZZ: OnceLock<Fuzz> = OnceLock::new();
    FUZZ.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = Config::from_toml(CONFIG).unwrap();
        let store = Arc::new(MemoryStore::new());
        let app = runtime
            .block_on(App::build(config, store, &Secrets::default(), Parts::All))
            .unwrap();
        Fuzz { runtime, app }
    })
}

/// The whole pipeline for one request, as a server hands it over: authentication, limits,
/// the signature, parsing, routing, rendering and the store.
fn post(path: &str, header: Option<(&'static str, &str)>, data: &[u8]) {
    let f = fuzz();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if let Some((name, value)) = header {
        headers.insert(name, http::HeaderValue::from_str(value).unwrap());
    }
    let req = Request {
        id: "fuzz".into(),
        method: http::Method::POST,
        path: path.into(),
        headers,
        peer: None,
        body: Bytes::copy_from_slice(data),
    };
    let resp = f
        .runtime
        .block_on(f.app.ingress.handle(req, 1_800_000_000_000));
    assert!(
        resp.status.is_success() || resp.status.is_client_error(),
        "{path}: {} {}",
        resp.status,
        resp.body
    );
    // Parsing without the signature check reaches what a forger cannot.
    let _ = f.app.ingress.preview(Some(path), data, 1_800_000_000_000);
}

/// Runs one input through `target`. Returns for every input: a panic is the bug.
pub fn run(target: &str, data: &[u8]) {
    // The answers' first byte picks the HTTP status, so every class is reached.
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (
            [200, 200, 200, 429, 500, 502, 503, 403][usize::from(*s % 8)],
            rest,
        ),
        None => (200, data),
    };
    match target {
        "hap" => {
            post(
                "/hap/message",
                Some(("x-hookbridge-token", "fuzz-hap-token")),
                data,
            );
            post(
                "/hap/todo",
                Some(("x-hookbridge-token", "fuzz-hap-token")),
                data,
            );
        }
        "dms" => post("/dms", None, data),
        "govding" => post(GOVDING_PATH, None, data),
        "generic" => {
            post(
                "/in/fuzz",
                Some(("x-fuzz-token", "fuzz-generic-token")),
                data,
            );
            post("/in/signed", Some(("x-signature", "sha256=00")), data);
        }
        "alertmanager" => post(
            "/alertmanager",
            Some(("authorization", "Bearer fuzz-am-token")),
            data,
        ),
        "dingtalk_answer" => {
            let _ = dingtalk::judge(dingtalk::SEND_PATH, status, body);
        }
        "govding_answer" => {
            let _ = govding::judge(govding::SEND_PATH, status, body, &["重复".into()]);
        }
        "zentao_answer" => {
            let _ = zentao::judge(status, body);
        }
        "wecom_answer" => {
            let _ = wecom::judge(wecom::SEND_PATH, status, body);
        }
        "robot_answer" => {
            let _ = dingtalk_robot::judge(status, body);
            let _ = wecom_robot::judge(status, body);
            let _ = feishu_robot::judge(status, body);
        }
        "config" => {
            // Parsed and checked, its templates compiled and its routes resolved: all that
            // `config check` does short of reading secrets.
            let Ok(config) = Config::from_toml(&String::from_utf8_lossy(data)) else {
                return;
            };
            let Ok(templates) = Templates::new(&registry::builtins(), &config.templates) else {
                return;
            };
            let renderers = config.connectors.renderers();
            let _ = Router::new(&config.routes, config.recipients, &renderers, templates);
        }
        other => panic!("no fuzz target {other}"),
    }
}
