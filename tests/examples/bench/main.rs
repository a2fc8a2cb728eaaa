//! The bench (run by `scripts/bench`): every function binary and a hello-world `lambda_http`
//! floor, each run as Lambda runs it (the Runtime API emulator of `fake_runtime`) against
//! DynamoDB Local behind a capacity meter and the fake DingTalk, ZenTao, 浙政钉 and robots.
//! Prints one Markdown table: size, init, first response, warm p50, peak RSS and CPU, each
//! beside the floor's, and DynamoDB units per event with the dollars per million events they
//! make. Asserts nothing about numbers; fails only when a function does not start or answer.
//!
//!   bench --bins DIR --floor FILE [--arm64 DIR] [--warm N] [--cold N] [--notifications N] [--only A,B]
//!         [--readme FILE] [--calls FILE]
//!
//! `--calls FILE` writes the DynamoDB operations each function made, as JSON, for
//! `scripts/validate-template.py --calls FILE` to check against the functions' IAM policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookbridge::event::now_ms;
use hookbridge::store::HistoryStore;
use hookbridge::store::dynamodb::DynamoStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_feishu::FakeFeishu;
use hookbridge_tests::fake_feishu_robot::FakeFeishuRobot;
use hookbridge_tests::fake_govding::FakeGovDing;
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::fake_runtime::{Answer, Session};
use hookbridge_tests::fake_wecom::FakeWeCom;
use hookbridge_tests::fake_wecom_robot::FakeWeComRobot;
use hookbridge_tests::fake_zentao::FakeZenTao;
use hookbridge_tests::meter::{Consumed, Meter};
use hookbridge_tests::{
    HAP_TOKEN, app_on, config_text, dynamo_store, dynamodb_endpoint, events, fixture, forgeries,
    request,
};
use serde_json::Value;

mod bill;
mod notifications;

/// One function's figures.
#[derive(Default)]
struct Figures {
    size: u64,
    arm64: Option<u64>,
    init: Duration,
    first: Duration,
    p50: Duration,
    rss_kib: u64,
    /// CPU per warm invocation.
    cpu: Duration,
    /// DynamoDB per invocation (one event or one delivery).
    consumed: Consumed,
    invocations: usize,
    log_bytes: usize,
}

struct Options {
    bins: PathBuf,
    floor: PathBuf,
    arm64: Option<PathBuf>,
    warm: usize,
    /// Cold starts of each function (and of the floor), interleaved; their medians are shown.
    cold: usize,
    /// Notifications of each case for the writes table.
    notifications: usize,
    /// Only these functions (and the floor), to look at a few while changing them.
    only: Option<Vec<String>>,
    readme: Option<PathBuf>,
    calls: Option<PathBuf>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        bins: "target/release".into(),
        floor: "target/release/hookbridge-floor".into(),
        arm64: None,
        warm: 200,
        cold: 7,
        notifications: 20,
        only: None,
        readme: None,
        calls: None,
    };
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--bins" => o.bins = value().into(),
            "--floor" => o.floor = value().into(),
            "--arm64" => o.arm64 = Some(value().into()),
            "--warm" => o.warm = value().parse().expect("--warm N"),
            "--cold" => o.cold = value().parse().expect("--cold N"),
            "--notifications" => o.notifications = value().parse().expect("--notifications N"),
            "--only" => o.only = Some(value().split(',').map(str::to_owned).collect()),
            "--readme" => o.readme = Some(value().into()),
            "--calls" => o.calls = Some(value().into()),
            _ => panic!("bench: unknown argument {a}"),
        }
    }
    o
}

/// A run of one binary: its environment and the payloads of its invocations, in order.
struct Run {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    payloads: Vec<Value>,
}

fn env(table: &str, meter: &Meter, config: String) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKBRIDGE_CONFIG", config),
        ("TABLE_NAME", table.to_owned()),
        ("AWS_ENDPOINT_URL", meter.url.clone()),
        ("AWS_ACCESS_KEY_ID", "x".into()),
        ("AWS_SECRET_ACCESS_KEY", "x".into()),
    ]
}

/// HAP's to-do message, to one person (one delivery per connector), with a message id of its
/// own.
fn hap_message(i: usize) -> String {
    let mut m: Value = serde_json::from_str(&fixture("hap-message-todo.json")).expect("JSON");
    m["messageId"] = format!("8d3e6f1a-4c2b-4a9e-b7d5-{i:012}").into();
    m["targets"] = serde_json::json!(["manager4220"]);
    m.to_string()
}

/// Stores `n` HAP messages as a webhook would and returns one stream batch per delivery of
/// `connector` (the sender's invocations).
async fn pending(store: &DynamoStore, config: &str, connector: &str, n: usize) -> Vec<Value> {
    let app = app_on(
        hookbridge::config::Config::from_toml(config).expect("bench config"),
        Arc::new(store.clone()),
    )
    .await;
    let mut batches = vec![];
    for i in 0..n {
        let body = hap_message(1_000_000 + i);
        let answer = app
            .ingress
            .handle(request("/hap/message", body, Some(HAP_TOKEN)), now_ms())
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let pk = format!("EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-{:012}", 1_000_000 + i);
        for d in store.deliveries_of(&pk).await.expect("stored") {
            if d.connector == connector {
                batches.push(events::stream_batch(store.table(), &[("INSERT", &pk, &d.sk)]).await);
            }
        }
    }
    batches
}

async fn runs(meter: &Meter, n: usize) -> (Vec<Run>, Fakes) {
    let fakes = Fakes {
        dingtalk: FakeDingTalk::start().await,
        zentao: FakeZenTao::start().await,
        govding: FakeGovDing::start().await,
        robot: FakeRobot::start(true, None).await,
        wecom_robot: FakeWeComRobot::start().await,
        feishu_robot: FakeFeishuRobot::start(false, None).await,
        wecom: FakeWeCom::start().await,
        feishu: FakeFeishu::start().await,
    };
    let hap = config_text(None, "");
    let dms = format!(
        "{hap}\n[sources.dms]\nsignature_key = \"plain:{}\"\n[[routes]]\nsource = \"dms\"\nconnector = \"dingtalk\"\n\
         [recipients.dingtalk.map]\n\"1673826650168842\" = \"lisi\"\n",
        forgeries::KEY
    );
    let govding_token = "gw-path-token-0123456789";
    let govding_source = format!(
        "{hap}\n[sources.govding]\npath_token = \"plain:{govding_token}\"\n\
         [[routes]]\nsource = \"govding\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n"
    );
    let alertmanager = format!(
        "{hap}\n[sources.alertmanager]\nbearer_tokens = [\"plain:am-token\"]\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n"
    );
    let generic = format!(
        "{hap}\n[sources.generic.gitlab]\ntoken_header = \"X-Gitlab-Token\"\ntoken = \"plain:gl-token\"\n\
         id = \"/checkout_sha\"\nkind = \"/object_kind\"\n\
         [[routes]]\nsource = \"generic\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n"
    );
    let dingtalk = config_text(Some(&fakes.dingtalk.url), "");
    let zentao = config_text(
        None,
        &hookbridge_tests::fake_zentao::hap_route(&fakes.zentao.url),
    );
    let govding = config_text(
        None,
        &format!(
            "{}\n[recipients.govding.map]\nmanager4220 = \"10001\"\n\"0147282552401293909\" = \"10002\"\n",
            hookbridge_tests::fake_govding::hap_route(
                &fakes.govding.url,
                hookbridge_tests::fake_govding::APP_SECRET
            )
        ),
    );
    let robot = config_text(
        None,
        &format!(
            "[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
             [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n",
            fakes.robot.webhook()
        ),
    );
    let wecom_robot = config_text(
        None,
        &format!(
            "[connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\n\
             [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n",
            fakes.wecom_robot.webhook()
        ),
    );
    let feishu_robot = config_text(
        None,
        &format!(
            "[connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\n\
             [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n",
            fakes.feishu_robot.webhook()
        ),
    );
    let wecom = config_text(
        None,
        &hookbridge_tests::fake_wecom::hap_route(&fakes.wecom.url),
    );
    let feishu = config_text(
        None,
        &hookbridge_tests::fake_feishu::hap_route(&fakes.feishu.url),
    );

    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let dms_event = forgeries::event();
    let leave = fixture("govding-employee-leave.json");
    let firing = hookbridge_tests::alerts_now("alertmanager-firing.json");
    let push = fixture("generic-gitlab-push.json");
    let mut out = vec![
        Run {
            name: "floor",
            env: vec![],
            payloads: (0..n)
                .map(|_| events::apigw_v2("/", "{}", None, false))
                .collect(),
        },
        Run {
            name: "hap-webhook",
            env: env(&table, meter, hap.clone()),
            payloads: (0..n)
                .map(|i| events::apigw_v2("/hap/message", &hap_message(i), Some(HAP_TOKEN), false))
                .collect(),
        },
        Run {
            name: "dms-webhook",
            env: env(&table, meter, dms),
            payloads: (0..n)
                .map(|i| {
                    let event = dms_event.replace("4829103", &format!("{}", 5_000_000 + i));
                    events::apigw_v2("/dms", &forgeries::signed(&event), None, false)
                })
                .collect(),
        },
        Run {
            name: "govding-webhook",
            env: env(&table, meter, govding_source),
            payloads: (0..n)
                .map(|i| {
                    let body = leave.replace(
                        "7c1e4b2a-9d3f-4e58-b6a1-2f0c8d9e3b47",
                        &format!("7c1e4b2a-9d3f-4e58-b6a1-{i:012}"),
                    );
                    events::apigw_v2(&format!("/govding/{govding_token}"), &body, None, false)
                })
                .collect(),
        },
        Run {
            name: "alertmanager-webhook",
            env: env(&table, meter, alertmanager),
            payloads: (0..n)
                .map(|i| {
                    // A group of two new alerts each time.
                    let body = firing
                        .replace("dd497cbf50fa3589", &format!("dd497cbf{i:08x}"))
                        .replace("acce832ab5a7815c", &format!("acce832a{i:08x}"));
                    let mut request = events::apigw_v2("/alertmanager", &body, None, false);
                    request["headers"]["authorization"] = "Bearer am-token".into();
                    request
                })
                .collect(),
        },
        Run {
            name: "generic-webhook",
            env: env(&table, meter, generic),
            payloads: (0..n)
                .map(|i| {
                    let body = push.replace(
                        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                        &format!("{i:040x}"),
                    );
                    let mut request = events::apigw_v2("/in/gitlab", &body, None, false);
                    request["headers"]["x-gitlab-token"] = "gl-token".into();
                    request
                })
                .collect(),
        },
    ];
    // Senders: one delivery per invocation, stored beforehand (not metered).
    let robot_n = n.min(15); // the robot takes 20 a minute
    for (name, text, connector, count) in [
        ("dingtalk-sender", dingtalk, "dingtalk", n),
        ("zentao-sender", zentao, "zentao", n),
        ("govding-sender", govding, "govding", n),
        ("dingtalk-robot-sender", robot, "dingtalk_robot", robot_n),
        ("wecom-robot-sender", wecom_robot, "wecom_robot", robot_n),
        ("feishu-robot-sender", feishu_robot, "feishu_robot", robot_n),
        ("wecom-sender", wecom, "wecom", n),
        ("feishu-sender", feishu, "feishu", n),
    ] {
        let store = dynamo_store().await;
        let payloads = pending(&store, &text, connector, count).await;
        out.push(Run {
            name,
            env: env(store.table(), meter, text),
            payloads,
        });
    }
    out.push(Run {
        name: "retry-sweeper",
        env: env(&table, meter, hap),
        payloads: (0..n).map(|_| events::schedule()).collect(),
    });
    (out, fakes)
}

/// The fake servers, alive while the functions run.
struct Fakes {
    dingtalk: FakeDingTalk,
    zentao: FakeZenTao,
    govding: FakeGovDing,
    robot: FakeRobot,
    wecom_robot: FakeWeComRobot,
    feishu_robot: FakeFeishuRobot,
    wecom: FakeWeCom,
    feishu: FakeFeishu,
}

fn succeeded(answer: &Answer) -> bool {
    match answer {
        Answer::Response(r) => {
            r.get("statusCode").is_none_or(|s| s == 200)
                && r.get("batchItemFailures")
                    .is_none_or(|f| f.as_array().is_some_and(Vec::is_empty))
        }
        _ => false,
    }
}

/// One cold start of `binary`: its init and first response (the Runtime API emulator's clock).
async fn cold_start(
    binary: &Path,
    run: &Run,
    payload: Value,
) -> Result<(Duration, Duration), String> {
    let mut session = Session::start(binary.to_str().expect("a UTF-8 path"), &run.env).await;
    let answer = tokio::time::timeout(Duration::from_secs(20), session.invoke(payload)).await;
    let init = session.init().unwrap_or_default();
    let logs = session.stop().await;
    match answer {
        Ok((answer, first)) if succeeded(&answer) => Ok((init, first)),
        Ok((answer, _)) => Err(format!("{}: {answer:?}\n{logs}", run.name)),
        Err(_) => Err(format!("{}: no answer in 20 s\n{logs}", run.name)),
    }
}

fn median(mut all: Vec<Duration>) -> Duration {
    all.sort();
    all.get(all.len() / 2).copied().unwrap_or_default()
}

async fn measure(binary: &Path, run: Run, meter: &Meter) -> Result<Figures, String> {
    let mut f = Figures {
        size: std::fs::metadata(binary)
            .map_err(|e| format!("{}: {e}", binary.display()))?
            .len(),
        ..Figures::default()
    };
    let mut session = Session::start(binary.to_str().expect("a UTF-8 path"), &run.env).await;
    let before = meter.consumed();
    let mut warm = vec![];
    let mut cpu_before = Duration::ZERO;
    let n = run.payloads.len();
    for (i, payload) in run.payloads.into_iter().enumerate() {
        let sent = Instant::now();
        let Ok((answer, _)) =
            tokio::time::timeout(Duration::from_secs(20), session.invoke(payload)).await
        else {
            let logs = session.stop().await;
            return Err(format!(
                "{}: no answer to invocation {i} in 20 s\n{logs}",
                run.name
            ));
        };
        if !succeeded(&answer) {
            let logs = session.stop().await;
            return Err(format!("{}: {answer:?}\n{logs}", run.name));
        }
        if i == 0 {
            // Init and first response are the medians of the interleaved cold starts.
            cpu_before = session.usage().map(|u| u.1).unwrap_or_default();
        } else {
            warm.push(sent.elapsed());
        }
    }
    let (rss, cpu) = session.usage().unwrap_or_default();
    f.rss_kib = rss;
    f.cpu = (cpu - cpu_before) / u32::try_from(warm.len().max(1)).unwrap_or(1);
    warm.sort();
    f.p50 = warm.get(warm.len() / 2).copied().unwrap_or_default();
    f.consumed = meter.consumed().since(&before);
    f.invocations = n;
    f.log_bytes = session.stop().await.len();
    Ok(f)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(x: f64, floor: f64) -> String {
    if floor > 0.0 {
        format!(" ({:.1}×)", x / floor)
    } else {
        String::new()
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn table(all: &BTreeMap<&'static str, Figures>, order: &[&str]) -> String {
    let floor = &all["floor"];
    let mut t = String::from(
        "| function | x86_64 | arm64 | init | first response | warm p50 | peak RSS | CPU / event | DynamoDB / event |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for name in order {
        let Some(f) = all.get(name) else { continue };
        let per = |x: f64| x / f.invocations.max(1) as f64;
        let ddb = if *name == "floor" {
            "—".to_owned()
        } else {
            format!(
                "{:.1} W + {:.2} R, {:.1} calls",
                per(f.consumed.write_units),
                per(f.consumed.read_units),
                per(f.consumed.total_calls() as f64)
            )
        };
        t.push_str(&format!(
            "| {name} | {}{} | {} | {}{} | {}{} | {}{} | {:.1} MB{} | {}{} | {ddb} |\n",
            mb(f.size),
            ratio(f.size as f64, floor.size as f64),
            f.arm64.map(mb).unwrap_or_else(|| "—".into()),
            ms(f.init),
            ratio(f.init.as_secs_f64(), floor.init.as_secs_f64()),
            ms(f.first),
            ratio(f.first.as_secs_f64(), floor.first.as_secs_f64()),
            ms(f.p50),
            ratio(f.p50.as_secs_f64(), floor.p50.as_secs_f64()),
            f.rss_kib as f64 / 1024.0,
            ratio(f.rss_kib as f64, floor.rss_kib as f64),
            ms(f.cpu),
            ratio(f.cpu.as_secs_f64(), floor.cpu.as_secs_f64()),
        ));
    }
    t
}

/// The median time of a small DynamoDB Local call (a GetItem of a missing item), to read "first
/// response ≤ 3× the floor's plus one round trip" against.
async fn round_trip(endpoint: &str) -> Duration {
    let table = dynamo_store().await.table().to_owned();
    let client = hookbridge_tests::http_client();
    let mut times = vec![];
    for _ in 0..21 {
        let t = Instant::now();
        let sent = client
            .post(endpoint)
            .header("x-amz-target", "DynamoDB_20120810.GetItem")
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=x/20261202/us-east-1/dynamodb/aws4_request,                  SignedHeaders=host, Signature=0",
            )
            .body(format!(
                r#"{{"TableName":"{table}","Key":{{"pk":{{"S":"x"}},"sk":{{"S":"y"}}}}}}"#
            ))
            .send()
            .await;
        if sent.is_ok() {
            times.push(t.elapsed());
        }
    }
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

const START: &str = "<!-- bench:start -->";
const END: &str = "<!-- bench:end -->";

fn write_readme(path: &Path, text: &str) -> std::io::Result<()> {
    let readme = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
        return Err(std::io::Error::other(format!(
            "{}: no {START} … {END} markers",
            path.display()
        )));
    };
    let new = format!("{}{START}\n{text}{}", &readme[..a], &readme[b..]);
    std::fs::write(path, new)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let o = options();
    let meter = Meter::start(&dynamodb_endpoint()).await;
    // The cold starts' payloads, then one more than the warm count (the first warms up).
    let (runs, fakes) = runs(&meter, o.cold + o.warm + 1).await;
    let order: Vec<&'static str> = runs.iter().map(|r| r.name).collect();
    let mut all = BTreeMap::new();
    let mut failed = false;
    let binary = |name: &str| {
        if name == "floor" {
            o.floor.clone()
        } else {
            o.bins.join(name)
        }
    };
    let mut runs: Vec<Run> = runs
        .into_iter()
        .filter(|r| {
            r.name == "floor"
                || o.only
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|n| n == r.name))
        })
        .collect();
    // Cold starts interleaved, every function and the floor in turn, so that a busy moment of
    // the machine falls on all of them alike.
    let mut cold: BTreeMap<&'static str, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    eprintln!("bench: {} cold starts of each function", o.cold);
    for _ in 0..o.cold {
        for run in &mut runs {
            let payload = run.payloads.remove(0);
            match cold_start(&binary(run.name), run, payload).await {
                Ok((init, first)) => {
                    let c = cold.entry(run.name).or_default();
                    c.0.push(init);
                    c.1.push(first);
                }
                Err(e) => {
                    eprintln!("bench: {} did not start or answer: {e}", run.name);
                    failed = true;
                }
            }
        }
    }
    for run in runs {
        let name = run.name;
        let binary = binary(name);
        eprintln!("bench: {name} ({} invocations)", run.payloads.len());
        match measure(&binary, run, &meter).await {
            Ok(mut f) => {
                if let Some((inits, firsts)) = cold.remove(name) {
                    f.init = median(inits);
                    f.first = median(firsts);
                }
                f.arm64 = o.arm64.as_ref().and_then(|d| {
                    let file = if name == "floor" {
                        d.join("hookbridge-floor/bootstrap")
                    } else {
                        d.join(name).join("bootstrap")
                    };
                    std::fs::metadata(file).ok().map(|m| m.len())
                });
                all.insert(name, f);
            }
            Err(e) => {
                eprintln!("bench: {name} did not start or answer: {e}");
                failed = true;
            }
        }
    }
    if !all.contains_key("floor") {
        eprintln!("bench: the floor did not run; no table");
        return std::process::ExitCode::FAILURE;
    }
    let mut text = table(&all, &order);
    text.push_str(&format!(
        "\nOne DynamoDB Local round trip (p50): {}.\n\n",
        ms(round_trip(&dynamodb_endpoint()).await)
    ));
    text.push_str(&format!(
        "DingTalk API calls by the sender: {} `asyncsend_v2`, {} `gettoken` (one token for \
         the whole run).\n",
        fakes.dingtalk.count("asyncsend_v2"),
        fakes.dingtalk.count("gettoken")
    ));
    let mut measured = vec![];
    let mut full = None;
    let cases = notifications::CASES.iter().chain([&notifications::FULL]);
    for case in cases.take(if o.notifications > 0 { 5 } else { 0 }) {
        eprintln!(
            "bench: writes of {} notifications ({} people, follow-up {})",
            o.notifications, case.people, case.follow_up
        );
        match notifications::measure(&o.bins, &meter, &fakes.dingtalk, case, o.notifications).await
        {
            Ok(m) if case.full => full = Some(m),
            Ok(m) => measured.push((case, m)),
            Err(e) => {
                eprintln!("bench: the notifications did not all go through: {e}");
                failed = true;
            }
        }
    }
    text.push_str(&format!(
        "\n### DynamoDB writes per delivered DingTalk notification\n\n{} of each, end to end:\n\n{}",
        o.notifications,
        notifications::tables(&measured)
    ));
    if let Some((_, default)) = measured.first() {
        let template = include_str!("../../../template.yaml");
        text.push_str(&format!(
            "\n### A small organisation's bill\n\n10,000 events a month, each the default case above (one person, \
             follow-up on, posted twice), and the stack's fixed costs (`template.yaml`, \
             `Monitoring=essential`), at us-east-1 list prices (`tests/examples/bench/bill.rs`):\n\n{}",
            bill::bill(default, full.as_ref(), template)
        ));
    }
    println!("{text}");
    if let Some(path) = &o.calls {
        let calls: BTreeMap<&str, Vec<&String>> = all
            .iter()
            .filter(|(name, _)| **name != "floor")
            .map(|(name, f)| (*name, f.consumed.calls.keys().collect()))
            .collect();
        let text = serde_json::to_string_pretty(&calls).expect("JSON");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("bench: {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Some(readme) = &o.readme
        && !failed
    {
        if let Err(e) = write_readme(readme, &text) {
            eprintln!("bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("bench: table written into {}", readme.display());
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
