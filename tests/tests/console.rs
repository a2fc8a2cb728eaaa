//! The operator console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against `serve` and the fake DingTalk. Each page loads without a console error,
//! a filter narrows the list, a delivery opens, a dead one is replayed and arrives at the fake,
//! the preview renders what would be sent with nothing sent, and a page on another site cannot
//! make the console replay.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hookbridge::event::Status;
use hookbridge::local::Local;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{HAP_TOKEN, config, fixture, http_client};
use serde_json::{Value, json};

const SEND: &str = "/topapi/message/corpconversation/asyncsend_v2";
const RECALL: &str = "/topapi/message/corpconversation/recall";

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    webdriver: String,
    _profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (scripts/test installs Debian's chromium-driver)");
        let webdriver = format!("http://127.0.0.1:{port}");
        let profile =
            std::env::temp_dir().join(format!("hookbridge-console-{}-{port}", std::process::id()));
        // The flags keep Chromium off the network it has no way to reach here.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "goog:chromeOptions": { "args": args, "binary": "/usr/bin/chromium" },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = caps.as_object().unwrap().clone();
        let mut last = None;
        for _ in 0..50 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        webdriver,
                        _profile: profile,
                    };
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    /// Opens `url` and fails on any error the page logged (a script error, a refused asset).
    async fn open(&self, url: &str) -> String {
        self.client.goto(url).await.unwrap();
        self.assert_no_console_errors().await;
        self.client.source().await.unwrap()
    }

    async fn assert_no_console_errors(&self) {
        let session = self.client.session_id().await.unwrap().unwrap();
        let logs: Value = http_client()
            .post(format!("{}/session/{session}/se/log", self.webdriver))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let errors: Vec<&Value> = logs["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    }

    /// Clicks what `css` finds and waits until the page it leads to (its address holding
    /// `leads_to`) has loaded, without console errors; its source.
    async fn click(&self, css: &str, leads_to: &str) -> String {
        // Marks this document, so the wait below knows the next one from it.
        self.client
            .execute("window.hookbridgeBefore = true", vec![])
            .await
            .unwrap();
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        for _ in 0..100 {
            let url = self.client.current_url().await.unwrap();
            let state = self
                .client
                .execute(
                    "return [document.readyState, window.hookbridgeBefore === true]",
                    vec![],
                )
                .await
                .unwrap();
            let loaded = state[0] == "complete" && state[1] == false;
            if url.as_str().contains(leads_to) && loaded {
                self.assert_no_console_errors().await;
                return self.client.source().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} did not lead to {leads_to}");
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

/// `serve` with HAP routed to DingTalk, whose first send is refused for good (a dead delivery).
async fn serve_with_a_dead_delivery(fake: &FakeDingTalk) -> (Local, String) {
    fake.inject(
        SEND,
        200,
        r#"{"errcode":60020,"errmsg":"访问ip不在白名单之中"}"#,
        1,
    );
    let local = Local::start(config(Some(&fake.url), "")).await.unwrap();
    let base = format!("http://{}", local.addr);
    for name in ["hap-message-mention.json", "hap-message-todo.json"] {
        let r = http_client()
            .post(format!("{base}/hap/message"))
            .header("X-Hookbridge-Token", HAP_TOKEN)
            .header("content-type", "application/json")
            .body(fixture(name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..100 {
        let all = local.app.store.recent(10).await.unwrap();
        if all.len() == 3 && all.iter().all(|d| d.status.is_final()) {
            return (local, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deliveries did not settle");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_replays_and_previews_in_the_browser() {
    let fake = FakeDingTalk::start().await;
    let (local, base) = serve_with_a_dead_delivery(&fake).await;
    let b = Browser::start().await;

    // A request with a wrong token: refused, stored nowhere, counted for the overview.
    let refused = http_client()
        .post(format!("{base}/hap/message"))
        .header("X-Hookbridge-Token", "wrong")
        .body(fixture("hap-message-mention.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Every page loads, in the language asked for (remembered), else the browser's.
    let overview = b.open(&format!("{base}/console?lang=zh")).await;
    assert!(overview.contains("hap · unauthorized"), "{overview}");
    assert!(
        overview.contains("概览") && overview.contains("需要先处理"),
        "{overview}"
    );
    let events = b.open(&format!("{base}/console/events")).await;
    assert!(events.contains("事件"), "the choice is remembered");
    let found = b
        .open(&format!("{base}/console/events?key=9f8e7d6c&within=hour"))
        .await;
    assert!(
        found.contains("9f8e7d6c-5b4a") && !found.contains("8d3e6f1a-4c2b"),
        "searched by id and time: {found}"
    );
    let english = b.open(&format!("{base}/console?lang=en")).await;
    assert!(english.contains("Needs attention first"));
    let events = b.open(&format!("{base}/console/events")).await;
    assert!(
        events.contains("mention") && events.contains("todo"),
        "{events}"
    );

    // The filter narrows the list to the dead one; it opens.
    b.open(&format!("{base}/console/deliveries")).await;
    b.client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("dead")
        .await
        .unwrap();
    b.click("form.filter button", "status=dead").await;
    let rows = b
        .client
        .find_all(Locator::Css("table.list tbody tr.status-dead"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let page = b
        .click("table.list tbody tr.status-dead a", "/console/delivery?")
        .await;
    assert!(
        page.contains("attempt 1 → dead: DingTalk")
            && page.contains("60020")
            && page.contains("id=\"replay\""),
        "{page}"
    );

    // Replayed: it is sent again and arrives at the fake.
    let sent_before = fake.calls(SEND).len();
    let after = b.click("#replay", "done=replayed").await;
    assert!(after.contains("Replayed: handed to its sender"), "{after}");
    let mut sent = false;
    for _ in 0..100 {
        let all = local.app.store.recent(10).await.unwrap();
        if all.iter().all(|d| d.status == Status::Sent) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "the replayed delivery was sent");
    assert_eq!(fake.calls(SEND).len(), sent_before + 1);

    // Recalled, once asked again on a page of its own: it reads recalled, DingTalk was asked.
    let shown = b.client.current_url().await.unwrap();
    b.open(shown.as_str()).await;
    let page = b.click("#recall", "/console/recall").await;
    assert!(page.contains("id=\"recall-confirm\""), "{page}");
    assert!(fake.calls(RECALL).is_empty(), "not before it is confirmed");
    let recalled = b.click("#recall-confirm", "done=recalled").await;
    assert!(
        recalled.contains("Recalled.") && recalled.contains("status-recalled"),
        "{recalled}"
    );
    assert_eq!(fake.calls(RECALL).len(), 1);

    // The preview, from a sample body, shows what would go out, and nothing does.
    b.open(&format!("{base}/console/preview")).await;
    b.client
        .find(Locator::Css("select[name=sample]"))
        .await
        .unwrap()
        .select_by_value("hap-message-mention")
        .await
        .unwrap();
    let form = b.click("#use-sample", "sample=hap-message-mention").await;
    assert!(
        form.contains("请在周五前补充二期报价"),
        "the sample fills the form"
    );
    b.client
        .find(Locator::Id("render"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("section.would-send"))
        .await
        .unwrap();
    b.assert_no_console_errors().await;
    let preview = b.client.source().await.unwrap();
    assert!(
        preview.contains("dingtalk") && preview.contains("请在周五前补充二期报价"),
        "{preview}"
    );
    assert_eq!(fake.calls(SEND).len(), sent_before + 1, "nothing sent");

    // A test send to one person: asked once more, then sent to that person only.
    b.client
        .find(Locator::Css("section.would-send input[name=to]"))
        .await
        .unwrap()
        .send_keys("ops_test")
        .await
        .unwrap();
    let ask = b
        .click("section.would-send button.test-send", "/console/test")
        .await;
    assert!(
        ask.contains("ops_test") && ask.contains("id=\"send-test\""),
        "{ask}"
    );
    assert_eq!(
        fake.calls(SEND).len(),
        sent_before + 1,
        "not before it is confirmed"
    );
    let done = b.click("#send-test", "/console/test").await;
    assert!(done.contains("Test sent to ops_test"), "{done}");
    let calls = fake.calls(SEND);
    assert_eq!(calls.len(), sent_before + 2);
    assert_eq!(calls.last().unwrap().body["userid_list"], "ops_test");

    b.stop().await;
    local.shutdown().await;
}

/// A page on another site, open in the operator's browser, posts a replay form to the
/// console: refused (it cannot know the CSRF token, and its Origin is not the console's).
#[tokio::test(flavor = "multi_thread")]
async fn another_sites_page_cannot_make_the_console_replay() {
    let fake = FakeDingTalk::start().await;
    let (local, base) = serve_with_a_dead_delivery(&fake).await;
    let dead = local
        .app
        .store
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.status == Status::Dead)
        .unwrap();
    // The other site: a page that posts a form to the console as soon as it loads.
    let id = dead.key().to_string();
    let evil = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let form = format!(
                r#"<!doctype html><form id="f" method="post" action="{base}/console/replay">
                <input name="id" value="{id}"><input name="csrf" value="guess"></form>
                <script>document.getElementById("f").submit()</script>"#,
                base = base.clone(),
                id = id.clone()
            );
            async move { axum::response::Html(form) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, evil).await });

    let b = Browser::start().await;
    b.client.goto(&evil_url).await.unwrap();
    // The other site's form posts itself; wait for the console's answer to it.
    let mut landed = String::new();
    for _ in 0..100 {
        landed = b.client.source().await.unwrap();
        if landed.contains("refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        landed.contains("refused: a change must come from a form of this console"),
        "{landed}"
    );
    let still = local
        .app
        .store
        .delivery(&dead.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, Status::Dead, "nothing was replayed");
    b.stop().await;
    local.shutdown().await;
}

/// Each sample the preview offers is a body its source reads at the path it names, on the
/// example config: picking one always previews something.
#[tokio::test]
async fn every_sample_previews_at_its_path() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/example.toml"
    ))
    .unwrap();
    let config = hookbridge::config::Config::from_toml(&text).unwrap();
    let h = hookbridge_tests::Harness::new(config).await;
    for (name, path, body) in hookbridge::console::SAMPLES {
        let previewed = h
            .app
            .ingress
            .preview(Some(path), body.as_bytes(), 1_800_000_000_000);
        assert!(previewed.is_ok(), "{name} at {path}: {previewed:?}");
    }
}
