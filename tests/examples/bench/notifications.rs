//! DynamoDB writes per delivered DingTalk notification, end to end: a HAP to-do posted twice
//! (sources retry) to `hap-webhook`, its delivery sent by `dingtalk-sender` from the stream
//! record, followed up when the follow-up is on (`retry-sweeper` hands it to the sender
//! function once due, which asks DingTalk), each function run as Lambda runs it behind the
//! meter. For a to-do to
//! one person and to two, with `follow_up` at its default and off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use hookbridge::store::dynamodb::sdk::types::AttributeValue;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_lambda::FakeLambda;
use hookbridge_tests::fake_runtime::Session;
use hookbridge_tests::meter::{Consumed, Meter};
use hookbridge_tests::{
    HAP_TOKEN, config_text, dynamo_client, dynamo_store, dynamodb_endpoint, events, fixture,
};
use serde_json::Value;

/// One measured case: who the to-do is for and how it is followed up; `full`: the functions
/// publish every metric series (`Monitoring=full`), for the bill.
pub struct Case {
    pub people: usize,
    pub follow_up: &'static str,
    pub full: bool,
}

pub const CASES: [Case; 4] = [
    Case {
        people: 1,
        follow_up: "failures",
        full: false,
    },
    Case {
        people: 2,
        follow_up: "failures",
        full: false,
    },
    Case {
        people: 1,
        follow_up: "off",
        full: false,
    },
    Case {
        people: 2,
        follow_up: "off",
        full: false,
    },
];

/// The default case with every series published: what `Monitoring=full` adds to the bill.
pub const FULL: Case = Case {
    people: 1,
    follow_up: "failures",
    full: true,
};

/// What one function did in a case.
#[derive(Default)]
pub struct Work {
    pub consumed: Consumed,
    pub invocations: usize,
    /// Invocations' time, as each was answered.
    pub time: Duration,
    pub log_bytes: usize,
}

/// What one case consumed, by function, over `notifications` delivered notifications, and
/// the bytes its table holds at the end.
pub struct Measured {
    pub notifications: usize,
    pub by_function: BTreeMap<&'static str, Work>,
    pub stored_bytes: usize,
    /// The custom metric series the functions published (`Name{dimension values}`).
    pub series: BTreeSet<String>,
}

/// The series in a function's log: each EMF directive's metrics by each of its dimension sets.
fn series(log: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for d in v["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for dims in d["Dimensions"].as_array().into_iter().flatten() {
                let values: Vec<&str> = dims
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| v[k.as_str()?].as_str())
                    .collect();
                for m in d["Metrics"].as_array().into_iter().flatten() {
                    let name = m["Name"].as_str().unwrap_or_default();
                    all.insert(format!("{name}{{{}}}", values.join(",")));
                }
            }
        }
    }
    all
}

impl Measured {
    fn per(&self, f: impl Fn(&Work) -> f64) -> f64 {
        self.by_function.values().map(f).sum::<f64>() / self.notifications as f64
    }

    pub fn write_units(&self) -> f64 {
        self.per(|w| w.consumed.write_units)
    }

    pub fn read_units(&self) -> f64 {
        self.per(|w| w.consumed.read_units)
    }
}

fn todo(i: usize, case: &Case) -> String {
    let people = case.people;
    let mut m: Value = serde_json::from_str(&fixture("hap-message-todo.json")).expect("JSON");
    m["messageId"] = format!("5e0c2d4b-1a3f-4b6c-9d8e-{i:012}").into();
    // Words of its own: DingTalk shows the same content to one person once a day.
    let text = m["message"].as_str().unwrap_or_default().to_owned();
    let full = if case.full { " full" } else { "" };
    m["message"] = format!("{text}（{}{full} {people} 第 {i} 件）", case.follow_up).into();
    let targets = ["manager4220", "0147282552401293909"];
    m["targets"] = serde_json::json!(targets[..people]);
    m.to_string()
}

/// The deliveries in `status`, read past the meter.
async fn in_status(table: &str, status: &str) -> Vec<(String, String)> {
    let out = dynamo_client(&dynamodb_endpoint())
        .scan()
        .table_name(table)
        .filter_expression("begins_with(sk, :dlv) AND #s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":dlv", AttributeValue::S("DLV#".into()))
        .expression_attribute_values(":s", AttributeValue::S(status.into()))
        .send()
        .await
        .expect("scan");
    let text = |item: &std::collections::HashMap<String, AttributeValue>, k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    out.items()
        .iter()
        .map(|i| (text(i, "pk"), text(i, "sk")))
        .collect()
}

/// Deliveries not done yet.
async fn open(table: &str) -> usize {
    let mut n = 0;
    for status in [
        "pending",
        "sending",
        "checking",
        "retrying",
        "undelivered",
        "dead",
    ] {
        n += in_status(table, status).await.len();
    }
    n
}

/// Invokes `session` with `payload` and adds what it did to `into`.
async fn metered(
    session: &mut Session,
    payload: Value,
    meter: &Meter,
    into: &mut Work,
) -> Result<(), String> {
    let before = meter.consumed();
    let started = std::time::Instant::now();
    let (answer, _) = tokio::time::timeout(Duration::from_secs(20), session.invoke(payload))
        .await
        .map_err(|_| "no answer in 20 s".to_owned())?;
    if !super::succeeded(&answer) {
        return Err(format!("{answer:?}"));
    }
    into.time += started.elapsed();
    into.invocations += 1;
    into.consumed.add(&meter.consumed().since(&before));
    Ok(())
}

/// About what DynamoDB bills as the table's size: each item's attribute names and values.
async fn stored_bytes(table: &str) -> usize {
    fn size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
            AttributeValue::L(l) => 3 + l.iter().map(size).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>(),
            _ => 1,
        }
    }
    let out = dynamo_client(&dynamodb_endpoint())
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan");
    out.items()
        .iter()
        .map(|item| item.iter().map(|(k, v)| k.len() + size(v)).sum::<usize>())
        .sum()
}

/// Runs `n` notifications of `case` through the three functions in `bins`.
pub async fn measure(
    bins: &Path,
    meter: &Meter,
    dingtalk: &FakeDingTalk,
    case: &Case,
    n: usize,
) -> Result<Measured, String> {
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let config = config_text(
        Some(&dingtalk.url),
        &format!(
            // A claim lapses after 2 s, its follow-up a second after the send: on its claim's
            // index entry, as with the defaults (1 and 5 minutes).
            "follow_up = \"{}\"\nfollow_up_delay_secs = 1\n\n[delivery]\nclaim_lease_secs = 2\n",
            case.follow_up
        ),
    );
    let mut env = super::env(&table, meter, config);
    if case.full {
        env.push(("HOOKBRIDGE_METRICS", "full".into()));
    }
    // The sweeper hands due follow-ups to the sender function, as the stack has it: the
    // invocations are held here and run through the sender's own binary.
    let lambda = FakeLambda::holding(&["dingtalk-sender"]).await;
    let mut sweeper_env = env.clone();
    sweeper_env.push((
        "HOOKBRIDGE_FOLLOW_UP_FUNCTIONS",
        "dingtalk=dingtalk-sender".into(),
    ));
    sweeper_env.push(("AWS_ENDPOINT_URL_LAMBDA", lambda.url.clone()));
    let start = |name: &str, env: &Vec<(&'static str, String)>| {
        let binary = bins.join(name);
        let env = env.clone();
        async move { Session::start(binary.to_str().expect("UTF-8 path"), &env).await }
    };
    let mut webhook = start("hap-webhook", &env).await;
    let mut sender = start("dingtalk-sender", &env).await;
    let mut sweeper = start("retry-sweeper", &sweeper_env).await;
    let mut work: BTreeMap<&'static str, Work> = BTreeMap::new();
    let ran: Result<(), String> = async {
        for i in 0..n {
            for _ in 0..2 {
                let request =
                    events::apigw_v2("/hap/message", &todo(i, case), Some(HAP_TOKEN), false);
                let into = work.entry("hap-webhook").or_default();
                metered(&mut webhook, request, meter, into).await?;
            }
        }
        // Sends, then follow-ups as they come due, until nothing is left to do.
        for _ in 0..6 {
            for (pk, sk) in in_status(&table, "pending").await {
                let batch = events::stream_batch(&table, &[("MODIFY", &pk, &sk)]).await;
                let into = work.entry("dingtalk-sender").or_default();
                metered(&mut sender, batch, meter, into).await?;
            }
            if open(&table).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1_600)).await;
            let into = work.entry("retry-sweeper").or_default();
            metered(&mut sweeper, events::schedule(), meter, into).await?;
            for handed in lambda.take("dingtalk-sender") {
                let into = work.entry("dingtalk-sender").or_default();
                metered(&mut sender, handed, meter, into).await?;
            }
        }
        Ok(())
    }
    .await;
    let mut published = BTreeSet::new();
    for (name, session) in [
        ("hap-webhook", webhook),
        ("dingtalk-sender", sender),
        ("retry-sweeper", sweeper),
    ] {
        let said = session.stop().await;
        if let Err(e) = &ran {
            return Err(format!("{e}\n{said}"));
        }
        work.entry(name).or_default().log_bytes = said.len();
        published.extend(series(&said));
    }
    // Every delivery sent (a to-do is a card per person), none left in any other status.
    let (sent, left) = (in_status(&table, "sent").await.len(), open(&table).await);
    if sent < n || left > 0 {
        return Err(format!(
            "{sent} deliveries of {n} notifications sent, {left} not done"
        ));
    }
    Ok(Measured {
        notifications: n,
        by_function: work,
        stored_bytes: stored_bytes(&table).await,
        series: published,
    })
}

/// The tables: write units per notification in each case, then each call of the first case.
pub fn tables(all: &[(&Case, Measured)]) -> String {
    let mut t = String::from(
        "| DingTalk to-do | follow-up | hap-webhook | dingtalk-sender | retry-sweeper | write units | read units |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (case, m) in all {
        let per = |f: &str| {
            m.by_function
                .get(f)
                .map_or(0.0, |w| w.consumed.write_units / m.notifications as f64)
        };
        t.push_str(&format!(
            "| {} | `{}` | {:.1} | {:.1} | {:.1} | **{:.1}** | {:.1} |\n",
            if case.people == 1 {
                "1 person"
            } else {
                "2 people"
            },
            case.follow_up,
            per("hap-webhook"),
            per("dingtalk-sender"),
            per("retry-sweeper"),
            m.write_units(),
            m.read_units(),
        ));
    }
    if let Some((case, m)) = all.first() {
        t.push_str(&format!(
            "\nEach write of one notification ({} person, follow-up `{}`; each posted twice):\n\n\
             | function | call (items written) | calls | write units |\n|---|---|---|---|\n",
            case.people, case.follow_up
        ));
        for (function, w) in &m.by_function {
            for (call, (calls, units)) in &w.consumed.writes {
                t.push_str(&format!(
                    "| {function} | {call} | {:.2} | {:.2} |\n",
                    *calls as f64 / m.notifications as f64,
                    units / m.notifications as f64
                ));
            }
        }
    }
    t
}
