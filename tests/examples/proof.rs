//! The proof that nothing is lost and nothing is sent twice, counted where notifications
//! arrive: at the fake DingTalk, ZenTao, WeCom and Feishu apps and the WeCom and Feishu group
//! robots (HAP is routed to all six). Every event is posted twice (half the requests are
//! duplicates, as sources' retries make them), each request retried like a source until it is
//! answered 200. Prints figures; exits non-zero only when an acknowledged event was lost, a
//! person got one twice, or a secret showed up in a log line or an answer. `scripts/proof`
//! builds what it needs and runs it.
//!
//! proof SCENARIO --hookbridge BIN --dynamodb-jar JAR [--quick]
//!   load    2000 requests at 100 at a time through the `hookbridge serve` binary (durable store)
//!   faults  the same with 30 % of connector calls failing, the DingTalk, WeCom and Feishu
//!           tokens expiring every 5 s, those three throttling above 10 calls/s, the robots
//!           kept to their windows, and serve killed with SIGKILL halfway and started again on
//!           the same data
//!   lambda  the same load through the Lambda entry points (API Gateway v2 events in, DynamoDB
//!           stream batches out, the scheduled sweeper) on DynamoDB Local
//!   outage  lambda, with DynamoDB Local killed a third of the way in and started again 3 s later
//!   alerts  1000 Alertmanager groups of one alert through serve, each notification sent twice
//!           (Alertmanager's retry), then a third of them resolved (each sent twice too): every
//!           card once, every resolved card's bar turned 已恢复 once, the others still 告警中
//!   alerts-lambda  the same through the Lambda entry points on DynamoDB Local
//!   all     each in turn

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::store::dynamodb::{DynamoStore, sdk};
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_feishu::FakeFeishu;
use hookbridge_tests::fake_feishu_robot::FakeFeishuRobot;
use hookbridge_tests::fake_lambda::FakeLambda;
use hookbridge_tests::fake_wecom::FakeWeCom;
use hookbridge_tests::fake_wecom_robot::FakeWeComRobot;
use hookbridge_tests::fake_zentao::{FakeZenTao, hap_route};
use hookbridge_tests::{
    GOVDING_PATH_TOKEN, HAP_TOKEN, SECRETS, config_text, dynamo_client, events, fixture,
};
use serde_json::{Value, json};

struct Options {
    hookbridge: PathBuf,
    jar: PathBuf,
    requests: usize,
    concurrency: usize,
    /// How long deliveries may take to arrive after the last request was answered. A throttle
    /// holds a robot or WeCom for a minute and up to half as long again, and a restarted serve
    /// has forgotten its windows, so a robot may be held twice after the kill: 5 minutes.
    settle: Duration,
}

/// The counterparts of one run.
struct Fakes {
    dingtalk: FakeDingTalk,
    zentao: FakeZenTao,
    wecom: FakeWeCom,
    feishu: FakeFeishu,
    wecom_robot: FakeWeComRobot,
    feishu_robot: FakeFeishuRobot,
}

/// The robots' limits in this run, the fakes' and hookbridge's alike: a group takes far fewer
/// posts than a run makes, and the windows that keep hookbridge under them are what is shown.
const WECOM_ROBOT_PER_MINUTE: usize = 1200;
const FEISHU_ROBOT_LIMITS: (usize, usize) = (1200, 20);

/// WeCom's messages a minute and Feishu's a second to one person in this run, the fakes' and
/// hookbridge's alike: every event goes to the same two people, as no organisation's would (the
/// real limits are kept in tests/tests/wecom.rs and tests/tests/feishu.rs).
const PER_PERSON: (usize, usize) = (100_000, 1_000);

impl Fakes {
    async fn start() -> Fakes {
        Fakes {
            dingtalk: FakeDingTalk::start().await,
            zentao: FakeZenTao::start().await,
            wecom: {
                let w = FakeWeCom::start().await;
                w.set_person_limit(PER_PERSON.0);
                w
            },
            feishu: {
                let f = FakeFeishu::start().await;
                f.set_receiver_limit(PER_PERSON.1);
                f
            },
            wecom_robot: {
                let r = FakeWeComRobot::start().await;
                r.set_per_minute(WECOM_ROBOT_PER_MINUTE);
                r
            },
            feishu_robot: {
                let r = FakeFeishuRobot::start(true, None).await;
                r.set_limits(FEISHU_ROBOT_LIMITS.0, FEISHU_ROBOT_LIMITS.1);
                r
            },
        }
    }

    /// 30 % of calls failing, throttling above 10 calls a second (DingTalk, Feishu; WeCom limits
    /// by the minute and a throttle holds a minute: tests/tests/wecom.rs), tokens expiring every
    /// 5 s.
    fn faulty(&self) -> tokio::task::JoinHandle<()> {
        self.dingtalk.set_fail_ratio(0.3);
        self.zentao.set_fail_ratio(0.3);
        self.wecom.set_fail_ratio(0.3);
        self.feishu.set_fail_ratio(0.3);
        self.wecom_robot.set_fail_ratio(0.3);
        self.feishu_robot.set_fail_ratio(0.3);
        self.dingtalk.set_qps_limit(10);
        self.feishu.set_qps_limit(10);
        let (dingtalk, wecom, feishu) = (
            self.dingtalk.clone(),
            self.wecom.clone(),
            self.feishu.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                dingtalk.expire_token();
                wecom.expire_tokens();
                feishu.expire_tokens();
            }
        })
    }
}

/// What the sources saw.
#[derive(Default)]
struct Posted {
    latencies: Vec<Duration>,
    /// Answers other than 200 (503 while the store was down), each retried.
    refused: AtomicUsize,
    /// Requests that got no answer (serve killed, not yet back), each retried.
    unanswered: AtomicUsize,
    /// Shared with whoever waits for a point in the burst (to kill something there).
    acknowledged: Arc<AtomicUsize>,
    took: Duration,
}

/// Every text the run said to anyone: log lines and answers, searched for secrets at the end.
type Said = Arc<Mutex<String>>;

fn marker(i: usize) -> String {
    format!("load-{i:05}-end")
}

/// A HAP message for event `i` (one DingTalk user, and ZenTao by the route).
fn body(i: usize) -> String {
    json!({
        "messageId": format!("load-{i:05}"),
        "message": format!("第 {i} 条通知 {}", marker(i)),
        "messageTypeV2": 11,
        "appName": "负载",
        "targets": ["lisi"],
    })
    .to_string()
}

/// What a run posts: HAP messages, or Alertmanager groups that fire and, a third of them
/// (every third group), resolve.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    Hap,
    Alerts,
}

/// One request as a source sends it.
struct Req {
    path: &'static str,
    body: String,
    /// The header the source proves itself with.
    auth: (&'static str, String),
}

impl Load {
    /// Event `i` (resolving, for an alert group).
    fn request(self, i: usize, resolved: bool) -> Req {
        match self {
            Load::Hap => Req {
                path: "/hap/message",
                body: body(i),
                auth: ("x-hookbridge-token", HAP_TOKEN.into()),
            },
            Load::Alerts => Req {
                path: "/alertmanager",
                body: alert_group(i, resolved),
                auth: ("authorization", format!("Bearer {HAP_TOKEN}")),
            },
        }
    }

    /// The groups that resolve: every third.
    fn resolves(i: usize) -> bool {
        i.is_multiple_of(3)
    }
}

/// When the run's alerts started: a minute before the run, so no repeat window has passed.
fn alerts_started() -> &'static str {
    static START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    START.get_or_init(|| {
        (chrono::Utc::now() - chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

/// Alertmanager's notification for group `i`: one alert for lisi, firing or resolved.
fn alert_group(i: usize, resolved: bool) -> String {
    let status = if resolved { "resolved" } else { "firing" };
    let ends = if resolved {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        "0001-01-01T00:00:00Z".into()
    };
    let group = format!("g{i:05}");
    json!({
        "receiver": "hookbridge",
        "status": status,
        "alerts": [{
            "status": status,
            "labels": { "alertname": "Load", "group": group, "notify": "lisi" },
            "annotations": { "summary": format!("第 {i} 组告警 {}", marker(i)) },
            "startsAt": alerts_started(),
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": format!("{i:016x}"),
        }],
        "groupLabels": { "group": group },
        "commonLabels": { "alertname": "Load", "group": group, "notify": "lisi" },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": format!("{{}}:{{group=\"{group}\"}}"),
        "truncatedAlerts": 0,
    })
    .to_string()
}

/// Event numbers named in `text`, once per mention.
fn markers(text: &str) -> Vec<usize> {
    text.match_indices("load-")
        .filter_map(|(at, _)| {
            let rest = &text[at + 5..];
            (rest.get(5..9) == Some("-end"))
                .then(|| rest[..5].parse().ok())
                .flatten()
        })
        .collect()
}

/// How often each event reached a person, per connector of `load`: DingTalk's tasks (less
/// those DingTalk did not show because the same content reached that person already today),
/// ZenTao's notifications, what WeCom and Feishu showed (their duplicate check and uuid make a
/// resend one message).
fn arrivals(f: &Fakes, load: Load) -> Vec<(&'static str, HashMap<usize, usize>)> {
    let mut dingtalk = HashMap::new();
    for task in f.dingtalk.tasks() {
        let shown = task.userids.len() - task.forbidden.len();
        for i in markers(&task.content.to_string()) {
            *dingtalk.entry(i).or_default() += shown;
        }
    }
    let mut zentao = HashMap::new();
    for call in f.zentao.calls("sendNotification") {
        for i in markers(&call.body.to_string()) {
            *zentao.entry(i).or_default() += 1;
        }
    }
    let mut out = vec![("dingtalk", dingtalk), ("zentao", zentao)];
    if load == Load::Hap {
        let mut wecom = HashMap::new();
        for shown in f.wecom.shown() {
            for i in markers(&shown.body.to_string()) {
                *wecom.entry(i).or_default() += shown.users.len();
            }
        }
        let mut feishu = HashMap::new();
        for shown in f.feishu.shown() {
            for i in markers(&shown.content.to_string()) {
                *feishu.entry(i).or_default() += 1;
            }
        }
        let robot = |posted: Vec<serde_json::Value>| {
            let mut m = HashMap::new();
            for p in posted {
                for i in markers(&p.to_string()) {
                    *m.entry(i).or_default() += 1;
                }
            }
            m
        };
        out.extend([
            ("wecom", wecom),
            ("feishu", feishu),
            ("wecom_robot", robot(f.wecom_robot.posted())),
            ("feishu_robot", robot(f.feishu_robot.posted())),
        ]);
    }
    out
}

/// Quick retries, and a claim lease of 15 s rather than 5 minutes: a delivery whose outcome
/// could not be recorded while the store was down waits out its lease before the sweeper hands
/// it on, and the run should not wait 5 minutes for it.
fn config(f: &Fakes) -> String {
    config_text(
        Some(&f.dingtalk.url),
        &format!(
            "{}{}{}{}\n[delivery]\nbackoff_base_secs = 1\nbackoff_cap_secs = 2\nmax_attempts = 25\nclaim_lease_secs = 15\n\
             [sources.govding]\npath_token = \"plain:{GOVDING_PATH_TOKEN}\"\n\
             [sources.alertmanager]\nbearer_tokens = [\"plain:{HAP_TOKEN}\"]\n\
             [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk\"\nkinds = [\"alert\"]\n\
             [[routes]]\nsource = \"alertmanager\"\nconnector = \"zentao\"\nkinds = [\"alert\"]\n",
            hap_route(&f.zentao.url),
            hookbridge_tests::fake_wecom::hap_route(&f.wecom.url).replace(
                "base_url",
                &format!(
                    "person_per_minute = {}\nperson_per_hour = {}\nbase_url",
                    PER_PERSON.0,
                    PER_PERSON.0 * 60
                )
            ),
            hookbridge_tests::fake_feishu::hap_route(&f.feishu.url).replace(
                "app_secret",
                &format!("receiver_per_second = {}\napp_secret", PER_PERSON.1)
            ),
            robots(f),
        ),
    )
}

/// HAP routed to a WeCom robot and a signed Feishu robot, each within the run's windows.
fn robots(f: &Fakes) -> String {
    format!(
        "\n[connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\nmax_per_minute = {WECOM_ROBOT_PER_MINUTE}\n\
         [connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{}\"\nmax_per_minute = {}\nmax_per_second = {}\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n",
        f.wecom_robot.webhook(),
        f.feishu_robot.webhook(),
        hookbridge_tests::fake_feishu_robot::SECRET,
        FEISHU_ROBOT_LIMITS.0,
        FEISHU_ROBOT_LIMITS.1,
    )
}

/// A request in, its status and body out; `None` when nothing answered.
type Call<In> = Arc<
    dyn Fn(In) -> std::pin::Pin<Box<dyn Future<Output = Option<(u16, String)>> + Send>>
        + Send
        + Sync,
>;

/// Posts event `i`.
type Post = Call<usize>;

/// Sends one request where the run posts (serve, or the Lambda entry point).
type Sender = Call<Req>;

/// Posts event `i` of `load` (resolving, or firing) through `send`.
fn posts(send: &Sender, load: Load, resolving: bool) -> Post {
    let send = send.clone();
    Arc::new(move |i| {
        // The resolving phase numbers only the groups that resolve.
        let req = if resolving {
            load.request(3 * i, true)
        } else {
            load.request(i, false)
        };
        send(req)
    })
}

/// Every event of `load`, twice each; for alerts then the resolving groups, twice each too.
async fn post_load(
    name: &str,
    send: &Sender,
    load: Load,
    o: &Options,
    said: &Said,
    acknowledged: Arc<AtomicUsize>,
) -> Posted {
    let events = o.requests / 2;
    let posted = post_all(
        posts(send, load, false),
        events,
        o.concurrency,
        said,
        acknowledged,
    )
    .await;
    if load == Load::Alerts {
        let resolving = (0..events).filter(|i| Load::resolves(*i)).count();
        let more = Arc::new(AtomicUsize::new(0));
        let resolved = post_all(
            posts(send, load, true),
            resolving,
            o.concurrency,
            said,
            more,
        )
        .await;
        println!(
            "{name:<7} {resolving} of {events} groups resolved ({} requests in {:.1} s)",
            2 * resolving,
            resolved.took.as_secs_f64()
        );
    }
    posted
}

/// For alerts: every resolved group's card turned 已恢复 by one bar update, the others still
/// read 告警中 (waiting at most `settle`).
async fn bars(name: &str, f: &Fakes, load: Load, events: usize, settle: Duration) -> bool {
    if load != Load::Alerts {
        return true;
    }
    let resolving = (0..events).filter(|i| Load::resolves(*i)).count();
    let waiting = Instant::now();
    while f.dingtalk.count("status_bar/update") < resolving && waiting.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut flipped, mut wrong) = (0, 0);
    for task in f.dingtalk.tasks() {
        for i in markers(&task.content.to_string()) {
            let want = if Load::resolves(i) {
                "已恢复"
            } else {
                "告警中"
            };
            match task.status.as_deref() {
                Some(s) if s == want => flipped += usize::from(Load::resolves(i)),
                _ => wrong += 1,
            }
        }
    }
    let updates = f.dingtalk.count("status_bar/update");
    println!(
        "{name:<7} {flipped} of {resolving} resolved cards read 已恢复, with {updates} bar updates; {wrong} cards show the wrong state"
    );
    flipped == resolving && updates == resolving && wrong == 0
}

/// Posts each of `events` twice, shuffled, `concurrency` at a time; a request that is not
/// answered 200 is tried again after 100 ms, as a source retries (for 2 minutes at most).
async fn post_all(
    post: Post,
    events: usize,
    concurrency: usize,
    said: &Said,
    acknowledged: Arc<AtomicUsize>,
) -> Posted {
    let mut order: Vec<usize> = (0..events).chain(0..events).collect();
    fastrand::shuffle(&mut order);
    let posted = Arc::new(Posted {
        acknowledged,
        ..Posted::default()
    });
    let latencies = Arc::new(Mutex::new(vec![]));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for i in order {
        let (post, posted, latencies, permits, said) = (
            post.clone(),
            posted.clone(),
            latencies.clone(),
            permits.clone(),
            said.clone(),
        );
        all.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            for _ in 0..1200 {
                let sent = Instant::now();
                match post(i).await {
                    Some((200, answer)) => {
                        latencies.lock().unwrap().push(sent.elapsed());
                        posted.acknowledged.fetch_add(1, Ordering::Relaxed);
                        said.lock().unwrap().push_str(&(answer + "\n"));
                        return;
                    }
                    Some((_, answer)) => {
                        posted.refused.fetch_add(1, Ordering::Relaxed);
                        said.lock().unwrap().push_str(&(answer + "\n"));
                    }
                    None => {
                        posted.unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("event {i} was never acknowledged");
        });
    }
    while let Some(r) = all.join_next().await {
        r.expect("every request is acknowledged in the end");
    }
    let mut posted = Arc::into_inner(posted).unwrap();
    posted.took = started.elapsed();
    posted.latencies = std::mem::take(&mut latencies.lock().unwrap());
    posted.latencies.sort();
    posted
}

/// Waits until every event reached DingTalk and ZenTao (or `settle` passed), then a moment
/// more for late duplicates; prints the figures and whether anything was lost or doubled.
/// Deliveries serve says were in flight when it was killed are resent by design, and counted
/// apart.
async fn verdict(
    name: &str,
    f: &Fakes,
    load: Load,
    events: usize,
    posted: &Posted,
    settle: Duration,
    (said, said_from): (&Said, usize),
) -> bool {
    let waiting = Instant::now();
    // When each connector had every event: the slowest one is what a slow run is about.
    let mut complete: BTreeMap<&str, Duration> = BTreeMap::new();
    loop {
        let now = arrivals(f, load);
        for (connector, m) in &now {
            if m.len() == events {
                complete
                    .entry(connector)
                    .or_insert_with(|| waiting.elapsed());
            }
        }
        if complete.len() == now.len() || waiting.elapsed() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = waiting.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let interrupted = interrupted(&said.lock().unwrap()[said_from..]);
    let pct = |q: f64| {
        let l = &posted.latencies;
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let requests = 2 * events;
    println!(
        "{name:<7} {requests} requests ({events} events, 50 % duplicates): {:.0} acknowledged/s, p50 {:.1} ms, p99 {:.1} ms; {} refused (503) and {} unanswered, each retried",
        requests as f64 / posted.took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        posted.refused.load(Ordering::Relaxed),
        posted.unanswered.load(Ordering::Relaxed),
    );
    let (mut bad, mut lines, mut resent) = (0, vec![], vec![]);
    for (connector, m) in arrivals(f, load) {
        let lost = (0..events).filter(|i| !m.contains_key(i)).count();
        let (mut twice, mut explained) = (0, 0);
        for (i, n) in &m {
            if *n > 1 {
                if interrupted.contains(&(*i, connector)) {
                    explained += n - 1;
                } else {
                    twice += n - 1;
                }
            }
        }
        bad += lost + twice;
        lines.push(format!("{connector}: lost {lost}, duplicated {twice}"));
        if explained > 0 {
            resent.push(format!("{connector} {explained}"));
        }
    }
    let missing: Vec<_> = arrivals(f, load)
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| !complete.contains_key(c))
        .collect();
    let slowest = if missing.is_empty() {
        complete
            .iter()
            .max_by_key(|(_, d)| **d)
            .map_or(String::new(), |(c, _)| format!(" ({c})"))
    } else {
        format!(" (still short: {})", missing.join(", "))
    };
    println!(
        "{name:<7} {}; {} DingTalk and {} ZenTao calls; the last arrived {:.1} s after the last acknowledgment{slowest}",
        lines.join("; "),
        f.dingtalk.count(fake_dingtalk_send()),
        f.zentao.all_calls().len(),
        waited.as_secs_f64(),
    );
    if !interrupted.is_empty() {
        println!(
            "{name:<7} {} deliveries were in flight when serve or the store stopped, and sent again; shown twice because of it: {} (ZenTao and the robots have no idempotency key; DingTalk drops the same content to the same person within a day; WeCom's duplicate check and Feishu's uuid make a resend one message)",
            interrupted.len(),
            if resent.is_empty() {
                "none".to_owned()
            } else {
                resent.join(", ")
            }
        );
    }
    bad == 0
}

fn fake_dingtalk_send() -> &'static str {
    "/asyncsend_v2"
}

// ---- serve ----

struct Serve {
    child: Child,
}

/// `hookbridge serve` on `data` at `port`, its log (every level) appended to `said`.
fn serve(o: &Options, config: &Path, data: &Path, port: u16, said: &Said) -> Serve {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(&o.hookbridge)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookbridge runs");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = out.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("listening"), "serve did not start: {first}");
    std::thread::spawn(move || for _ in out {});
    let (err, said) = (child.stderr.take().unwrap(), said.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = said.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    Serve { child }
}

/// 浙政钉 callbacks, with the path token and with a guessed one: the token is a secret, so it
/// must not show in anything serve says (its log at every level, its answers).
async fn govding_callbacks(port: u16, said: &Said) {
    let client = hookbridge::http::client(Duration::from_secs(10)).unwrap();
    for token in [GOVDING_PATH_TOKEN, "guessed-token-0123456789"] {
        for name in ["govding-register-check.json", "govding-employee-leave.json"] {
            let answer = client
                .post(format!("http://127.0.0.1:{port}/govding/{token}"))
                .header("content-type", "application/json")
                .body(fixture(name))
                .send()
                .await;
            if let Ok(resp) = answer {
                let text = resp.text().await.unwrap_or_default();
                said.lock().unwrap().push_str(&(text + "\n"));
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_post(port: u16) -> Sender {
    let client = hookbridge::http::client(Duration::from_secs(10)).unwrap();
    Arc::new(move |req: Req| {
        let client = client.clone();
        Box::pin(async move {
            let resp = client
                .post(format!("http://127.0.0.1:{port}{}", req.path))
                .header(req.auth.0, req.auth.1)
                .header("content-type", "application/json")
                .body(req.body)
                .send()
                .await
                .ok()?;
            let status = resp.status().as_u16();
            Some((status, resp.text().await.ok()?))
        })
    })
}

/// Deliveries serve said it sends again after a restart (they were in flight at the kill), or
/// a sender said it sends again because the store went down before their outcome was recorded.
fn interrupted(said: &str) -> Vec<(usize, &'static str)> {
    said.lines()
        .filter(|l| {
            l.contains("was being sent when the process stopped")
                || l.contains("it is sent again once the claim lapses")
        })
        .flat_map(|l| {
            let connector = ["zentao", "wecom", "feishu", "wecom_robot", "feishu_robot"]
                .into_iter()
                .find(|c| l.contains(&format!("DLV#{c}#")))
                .unwrap_or("dingtalk");
            ids(l).into_iter().map(move |i| (i, connector))
        })
        .collect()
}

/// Event numbers in a delivery key `EVT#hap#load-00012/...`.
fn ids(line: &str) -> Vec<usize> {
    line.match_indices("EVT#hap#load-")
        .filter_map(|(at, m)| line.get(at + m.len()..at + m.len() + 5)?.parse().ok())
        .collect()
}

async fn through_serve(o: &Options, faults: bool, load: Load, said: &Said) -> bool {
    let said_from = said.lock().unwrap().len();
    let f = Fakes::start().await;
    let dir = std::env::temp_dir().join(format!(
        "hookbridge-proof-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, config(&f)).unwrap();
    let data = dir.join("data");
    let port = free_port();
    let events = o.requests / 2;
    let mut running = serve(o, &config_file, &data, port, said);
    let mut chores = vec![];
    if faults {
        chores.push(f.faulty());
    }
    let send = http_post(port);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let name = match (load, faults) {
        (Load::Alerts, _) => "alerts",
        (_, true) => "faults",
        _ => "load",
    };
    let posting = post_load(name, &send, load, o, said, acknowledged.clone());
    let posted = if faults {
        // Halfway through the burst of webhooks, SIGKILL, then a start on the same data.
        let killer = async {
            while acknowledged.load(Ordering::Relaxed) < events {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            running.child.kill().unwrap();
            running.child.wait().unwrap();
            println!(
                "faults  serve killed (SIGKILL) mid-burst; starting it again on the same data"
            );
            running = serve(o, &config_file, &data, port, said);
        };
        let (posted, ()) = tokio::join!(posting, killer);
        posted
    } else {
        posting.await
    };
    govding_callbacks(port, said).await;
    let ok = verdict(name, &f, load, events, &posted, o.settle, (said, said_from)).await
        & bars(name, &f, load, events, o.settle).await;
    chores.iter().for_each(|c| c.abort());
    let _ = running.child.kill();
    let _ = running.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

// ---- Lambda entry points on DynamoDB Local ----

/// DynamoDB Local on `port`, keeping its tables in `dir` (so it can be stopped and started).
fn dynamodb_local(o: &Options, dir: &Path, port: u16) -> Child {
    let mut child = Command::new("java")
        .current_dir(o.jar.parent().unwrap())
        .args(["-Djava.library.path=./DynamoDBLocal_lib", "-jar"])
        .arg(&o.jar)
        .args([
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            &port.to_string(),
            "-dbPath",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java runs DynamoDB Local");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("DynamoDB Local did not start on {port}");
}

/// The deliveries now pending, as a DynamoDB stream batch per connector (at most 100 records).
async fn pending_batches(client: &sdk::Client, table: &str) -> Vec<(String, Value)> {
    let scanned: Result<Vec<_>, _> = client
        .scan()
        .table_name(table)
        .filter_expression("#st = :p")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":p", sdk::types::AttributeValue::S("pending".into()))
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let Ok(items) = scanned else {
        return vec![];
    };
    let mut by_connector: HashMap<String, Vec<Value>> = HashMap::new();
    for (n, item) in items.into_iter().enumerate() {
        let image: serde_dynamo::Item = item.into();
        let image = serde_json::to_value(&image).unwrap();
        let connector = image["connector"]["S"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by_connector.entry(connector).or_default().push(json!({
            "eventID": format!("{n:032x}"),
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795871301,
                "Keys": {"pk": image["pk"], "sk": image["sk"]},
                "NewImage": image,
                "SequenceNumber": format!("{n:021}"),
                "SizeBytes": 512,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-12-02T00:00:00.000")
        }));
    }
    by_connector
        .into_iter()
        .flat_map(|(c, records)| {
            records
                .chunks(100)
                .map(|chunk| (c.clone(), json!({ "Records": chunk })))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn app(config: &str, store: Arc<DynamoStore>, parts: Parts) -> Arc<App> {
    let config = Config::from_toml(config).unwrap();
    Arc::new(
        App::build(config, store, &Secrets::default(), parts)
            .await
            .unwrap(),
    )
}

async fn through_lambda(o: &Options, outage: bool, load: Load, said: &Said) -> bool {
    let said_from = said.lock().unwrap().len();
    use lambda_runtime::{Context, LambdaEvent};
    let f = Fakes::start().await;
    let dir = std::env::temp_dir().join(format!(
        "hookbridge-proof-ddb-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let ddb = Arc::new(Mutex::new(dynamodb_local(o, &dir, port)));
    let client = dynamo_client(&format!("http://127.0.0.1:{port}"));
    let table = "hookbridge-proof";
    DynamoStore::create_table(&client, table).await.unwrap();
    let store = Arc::new(DynamoStore::new(
        client.clone(),
        table,
        Duration::from_secs(30 * 86_400),
    ));
    // DingTalk's sends followed up, as by default: the sweeper hands them to the sender.
    let text = config(&f).replace(
        "follow_up = \"off\"",
        "follow_up = \"failures\"\nfollow_up_delay_secs = 1",
    );
    let source = if load == Load::Alerts {
        "alertmanager"
    } else {
        "hap"
    };
    let webhook = app(&text, store.clone(), Parts::Source(source)).await;
    let mut senders = vec![];
    for connector in [
        "dingtalk",
        "zentao",
        "wecom",
        "feishu",
        "wecom_robot",
        "feishu_robot",
    ] {
        let sender = app(&text, store.clone(), Parts::Connector(connector)).await;
        senders.push((connector, sender));
    }
    // The sweeper hands due DingTalk follow-ups to its sender function, as the stack has it:
    // through the Lambda Invoke API (a fake one, running the sender's handler).
    let dingtalk_sender = senders
        .iter()
        .find(|(c, _)| *c == "dingtalk")
        .unwrap()
        .1
        .clone();
    let lambda = FakeLambda::start(vec![("dingtalk-sender".into(), dingtalk_sender)]).await;
    let invoke = hookbridge_tests::fake_lambda::sweeper_invoke(&lambda.url, "dingtalk-sender");
    // The stream and the schedule: pending deliveries to their sender, due retries re-queued,
    // due follow-ups handed on.
    let pump = {
        let (client, store) = (client.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                let batches = pending_batches(&client, table).await;
                let mut running = tokio::task::JoinSet::new();
                for (connector, batch) in batches {
                    let Some((_, sender)) = senders.iter().find(|(c, _)| *c == connector) else {
                        continue;
                    };
                    let sender = sender.clone();
                    running.spawn(async move {
                        let event = serde_json::from_value(batch).unwrap();
                        let _ = hookbridge::lambda::stream(
                            &sender,
                            LambdaEvent::new(event, Context::default()),
                        )
                        .await;
                    });
                }
                while running.join_next().await.is_some() {}
                let _ = hookbridge::lambda::sweeper(
                    store.as_ref(),
                    Some(&invoke),
                    LambdaEvent::new(events::schedule(), Context::default()),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let send: Sender = {
        let webhook = webhook.clone();
        Arc::new(move |req: Req| {
            let webhook = webhook.clone();
            Box::pin(async move {
                let mut event = events::apigw_v2(req.path, &req.body, None, false);
                event["headers"][req.auth.0] = req.auth.1.into();
                let req = lambda_http::request::from_str(&event.to_string()).ok()?;
                let resp = hookbridge::lambda::http(&webhook, req).await.ok()?;
                let status = resp.status().as_u16();
                Some((
                    status,
                    String::from_utf8_lossy(resp.body().as_ref()).into_owned(),
                ))
            })
        })
    };
    let events_n = o.requests / 2;
    let name = match (load, outage) {
        (Load::Alerts, _) => "alerts-lambda",
        (_, true) => "outage",
        _ => "lambda",
    };
    let posting = post_load(name, &send, load, o, said, Arc::new(AtomicUsize::new(0)));
    let posted = if outage {
        let stopper = async {
            while count(&client, table, "sk", "EVT").await < events_n / 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            {
                let mut child = ddb.lock().unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
            }
            println!(
                "outage  DynamoDB Local killed a third of the way in; starting it again in 3 s"
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            *ddb.lock().unwrap() = dynamodb_local(o, &dir, port);
        };
        let (posted, ()) = tokio::join!(posting, stopper);
        posted
    } else {
        posting.await
    };
    let ok = verdict(
        name,
        &f,
        load,
        events_n,
        &posted,
        o.settle,
        (said, said_from),
    )
    .await
        & bars(name, &f, load, events_n, o.settle).await
        & followed_up(name, &f, &lambda, &client, table, o.settle).await;
    pump.abort();
    let _ = ddb.lock().unwrap().kill();
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

/// Every DingTalk send is asked after once due, by the sender the sweeper hands it to: none is
/// left `checking` (the claim lease, 15 s, is when they come due).
async fn followed_up(
    name: &str,
    f: &Fakes,
    lambda: &FakeLambda,
    client: &sdk::Client,
    table: &str,
    settle: Duration,
) -> bool {
    let waiting = Instant::now();
    let mut left = count(client, table, "status", "checking").await;
    while left > 0 && waiting.elapsed() < settle + Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = count(client, table, "status", "checking").await;
    }
    let handed = lambda.invoked().len();
    println!(
        "{name:<7} follow-ups: {} getsendresult calls, made by dingtalk-sender in {handed} invocations by the sweeper; {left} sends left unchecked",
        f.dingtalk.count("getsendresult")
    );
    left == 0 && handed > 0
}

/// Items whose `attribute` is `value` (0 while the store is down).
async fn count(client: &sdk::Client, table: &str, attribute: &str, value: &str) -> usize {
    let pages: Result<Vec<_>, _> = client
        .scan()
        .table_name(table)
        .filter_expression("#a = :v")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", sdk::types::AttributeValue::S(value.into()))
        .select(sdk::types::Select::Count)
        .into_paginator()
        .send()
        .collect()
        .await;
    pages.map_or(0, |pages| {
        pages
            .iter()
            .map(|p| usize::try_from(p.count()).unwrap_or(0))
            .sum()
    })
}

/// The secrets of the run: none may appear in anything it said.
fn leaked(said: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| said.contains(s))
        .collect()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let quick = args.iter().any(|a| a == "--quick");
    let scenario = args.first().cloned().unwrap_or_else(|| "all".into());
    let o = Options {
        hookbridge: value("--hookbridge").expect("--hookbridge PATH"),
        jar: value("--dynamodb-jar").expect("--dynamodb-jar PATH"),
        requests: if quick { 200 } else { 2000 },
        concurrency: if quick { 20 } else { 100 },
        settle: Duration::from_secs(if quick { 300 } else { 600 }),
    };
    // The Lambda entry points log here, at debug level, as they would to CloudWatch.
    let said: Said = Arc::new(Mutex::new(String::new()));
    let writer = {
        let said = said.clone();
        move || Sink(said.clone())
    };
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_writer(writer)
        .init();
    let all = [
        "load",
        "faults",
        "lambda",
        "outage",
        "alerts",
        "alerts-lambda",
    ];
    let chosen: Vec<&str> = match scenario.as_str() {
        "all" => all.to_vec(),
        s if all.contains(&s) => vec![all.into_iter().find(|a| *a == s).unwrap()],
        s => {
            eprintln!("proof: no scenario {s:?}: {} or all", all.join(", "));
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for s in chosen {
        ok &= match s {
            "load" => through_serve(&o, false, Load::Hap, &said).await,
            "faults" => through_serve(&o, true, Load::Hap, &said).await,
            "lambda" => through_lambda(&o, false, Load::Hap, &said).await,
            "outage" => through_lambda(&o, true, Load::Hap, &said).await,
            "alerts" => through_serve(&o, false, Load::Alerts, &said).await,
            _ => through_lambda(&o, false, Load::Alerts, &said).await,
        };
    }
    let said = said.lock().unwrap();
    if let Some(path) = std::env::var_os("PROOF_LOG") {
        std::fs::write(path, said.as_bytes()).expect("PROOF_LOG is writable");
    }
    let leaks = leaked(&said);
    println!(
        "secrets: {} of log and answers searched; found {}",
        said.len(),
        if leaks.is_empty() {
            "none".to_owned()
        } else {
            leaks.join(", ")
        }
    );
    if ok && leaks.is_empty() {
        println!("proof: nothing lost, nothing duplicated, no secret said");
        std::process::ExitCode::SUCCESS
    } else {
        println!("proof: FAILED");
        std::process::ExitCode::FAILURE
    }
}

/// A log writer appending to what the run said.
struct Sink(Said);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
