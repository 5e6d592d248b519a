//! The dashboard in a real browser: the server runs in-process over the real
//! models, Debian's headless `chromium` loads `/` through `chromedriver`, and
//! the test uses the page as a person would: reads the header, asks a query,
//! watches the route and the streamed answer, then the request table, the
//! charts, the filters and the CSV export. It leaves screenshots in
//! `target/dashboard.png` and `target/dashboard-dark.png`.
//!
//! Skips (saying why) without `chromedriver` or the models, unless
//! `MDSA_REQUIRE_BROWSER=1` (set by `cargo xtask ci` in CI), which turns a
//! skip into a failure.

// A skipped test says why on stderr.
#![allow(clippy::print_stderr)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use mdsa_server::{Server, ServerConfig};
use serde_json::{Value, json};

const QUERY: &str = "What is compound interest?";
/// Routes nowhere (every score is below the router's threshold).
const NONSENSE: &str = "<b>asdf</b> qwer <img src=x onerror=\"window.__xss=1\">";
/// Bound on every wait for the page; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(60);
/// Bound on the whole test, so a wedged browser cannot hang CI.
const WHOLE_TEST: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);
const WIDTH: u32 = 1400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_headless_browser() {
    let Some(chromedriver) = find_program("chromedriver") else {
        skip("chromedriver is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let mdsa = match tokio::task::spawn_blocking(|| mdsa::Mdsa::builder().build()).await {
        Ok(Ok(mdsa)) => mdsa,
        Ok(Err(error)) => {
            skip(&format!(
                "models not available ({error}); run `cargo xtask fetch-models`"
            ));
            return;
        }
        Err(error) => panic!("building mdsa panicked: {error}"),
    };

    let server = Server::bind(
        mdsa,
        ServerConfig {
            port: 0,
            ..ServerConfig::default()
        },
    )
    .await
    .expect("the server binds a free port");
    let addr = server.local_addr().expect("a bound address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let driver = ChromeDriver::start(&chromedriver).await;
    let client = connect(&driver).await;

    // The checks run in their own task so that, pass or panic, the browser is
    // closed afterwards (a killed chromedriver would leave chromium running).
    let checks = tokio::spawn(tokio::time::timeout(
        WHOLE_TEST,
        use_the_dashboard(client.clone(), addr),
    ));
    let outcome = checks.await;
    let _ = client.close().await;
    drop(driver);
    let _ = stop.send(());
    let _ = serving.await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the dashboard test ran past {WHOLE_TEST:?}"),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the dashboard checks were cancelled: {error}"),
        },
    }
}

/// What a person does at the dashboard, checked step by step.
async fn use_the_dashboard(client: Client, addr: SocketAddr) {
    let page = Page {
        client,
        base: format!("http://{addr}"),
    };
    page.client
        .goto(&format!("{}/", page.base))
        .await
        .expect("the dashboard loads");
    // The server writes the version into the page.
    assert_eq!(
        page.client.title().await.expect("a title"),
        format!("mdsa {} · dashboard", env!("CARGO_PKG_VERSION"))
    );

    // The header, from the first /v1/stats poll.
    let domains = page
        .wait_for(
            "the header to list the domains",
            "document.querySelectorAll('#domains .chip').length >= 4 \
             && [...document.querySelectorAll('#domains .chip')].map(c => c.textContent)",
        )
        .await;
    assert_eq!(
        strings(&domains),
        ["finance", "medical", "support", "technical"]
    );
    assert_eq!(page.text("#readiness").await, "ready");
    assert_eq!(
        page.text("#version").await,
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(page.text("#in-flight").await.split(" / ").next(), Some("0"));
    let points_before = page.number("#chart-latency", "points").await;

    // Record every length the answer passes through, in the page itself: a
    // fast machine could stream the whole answer between two WebDriver calls.
    page.eval(
        "window.__lengths = []; \
         new MutationObserver(() => window.__lengths.push(document.getElementById('answer').textContent.length)) \
           .observe(document.getElementById('answer'), { childList: true, characterData: true, subtree: true }); \
         return true",
    )
    .await;
    page.ask(QUERY).await;

    // The route decision, before or while the answer streams.
    page.wait_for(
        "the route decision to show finance",
        "document.getElementById('route').dataset.domain === 'finance'",
    )
    .await;
    assert_eq!(page.text("#route-domain").await, "finance");
    let scores = page.json("#route-chart", "values").await;
    assert_eq!(
        scores.as_object().map(serde_json::Map::len),
        Some(4),
        "a score bar per domain: {scores}"
    );
    assert!(
        page.text("#route-reason")
            .await
            .starts_with("finance: score"),
        "the router's reason is shown"
    );

    // The answer streams in, then finishes.
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let (state, length) = page.answer_state().await;
        if seen.last() != Some(&length) {
            seen.push(length);
        }
        if state == "done" || state == "error" {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the answer did not finish within {WAIT:?}: state {state}, lengths {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = page.text("#answer").await;
    assert_eq!(
        page.attr("#answer", "data-outcome").await.as_deref(),
        Some("answered"),
        "answer: {answer:?}; events: {}",
        page.text("#answer-events").await
    );
    assert!(!answer.trim().is_empty());
    let lengths = page.eval("return window.__lengths").await;
    let lengths: Vec<u64> = lengths
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        lengths.windows(2).any(|w| 0 < w[0] && w[0] < w[1]),
        "the text grew over at least two observations: {lengths:?} (WebDriver saw {seen:?})"
    );
    eprintln!(
        "answer streamed through {} lengths in the page ({} seen over WebDriver) in {:.1} s",
        lengths.len(),
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    let events = page.text("#answer-events").await;
    assert!(
        events.contains("smollm2") && events.contains("answered"),
        "loading and done events: {events}"
    );
    assert!(page.text("#answer-summary").await.contains("total"));

    // The request table gains the row; finance queries are stored as a hash.
    let row = page
        .wait_for(
            "the request table to show the query",
            "(() => { const r = document.querySelector('#log-rows tr[data-domain=\"finance\"]'); \
              return r && r.dataset.status === 'completed' \
                && [...r.cells].map(c => c.textContent); })()",
        )
        .await;
    let cells = strings(&row);
    assert_eq!(cells[3], "smollm2", "model: {cells:?}");
    assert_eq!(cells[7], "[redacted]", "query: {cells:?}");
    assert!(cells[2].ends_with('%'), "confidence: {cells:?}");
    assert_eq!(page.number("#log-table", "rows").await, 1);

    // The charts take the request in.
    page.wait_for(
        "the charts to show the request",
        &format!(
            "(() => {{ const c = (id, key) => JSON.parse(document.getElementById(id).dataset[key] || '{{}}'); \
               return c('chart-throughput', 'last')['req/s'] > 0 \
                 && c('chart-latency', 'last').p50 > 0 \
                 && Number(document.getElementById('chart-latency').dataset.points) > {points_before} \
                 && c('chart-domains', 'values').finance >= 1 \
                 && c('chart-confidence', 'values')['0.9'] >= 1; }})()"
        ),
    )
    .await;
    assert_eq!(page.text("#kpi-requests").await, "1");
    let memory = page.json("#chart-memory", "values").await;
    assert!(
        memory
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k.starts_with("smollm2"))),
        "the generator is resident: {memory}"
    );
    // Its batching figures: passes of one sequence (one request at a time).
    let serving = page
        .wait_for(
            "the serving line of the generator",
            "(() => { const li = document.querySelector('#serving li');               return li && Number(li.dataset.steps) > 0 && [li.dataset.model, li.dataset.largestBatch,               li.dataset.kvBytes, li.textContent]; })()",
        )
        .await;
    let serving = strings(&serving);
    assert!(serving[0].starts_with("smollm2"), "{serving:?}");
    assert_eq!(serving[1], "1", "one request at a time: {serving:?}");
    assert!(serving[3].contains("batch 1.0 per step"), "{serving:?}");

    fit_window_to_page(&page).await;
    screenshot(&page, "dashboard.png").await;
    // The theme toggle: the same page in the other palette.
    page.click("#theme-toggle").await;
    assert_eq!(
        page.eval("return document.documentElement.dataset.theme")
            .await,
        json!("dark")
    );
    screenshot(&page, "dashboard-dark.png").await;

    // A query no domain fits, written as markup: the refusal shows, and the
    // query is shown as text, never run as HTML.
    page.ask(NONSENSE).await;
    page.wait_for(
        "the abstention to finish",
        "document.getElementById('answer').dataset.outcome === 'abstained'",
    )
    .await;
    assert_eq!(
        page.attr("#answer", "class").await.as_deref(),
        Some("answer-text refusal")
    );
    assert!(
        page.text("#answer")
            .await
            .starts_with("No domain fits this question"),
        "the refusal: {}",
        page.text("#answer").await
    );
    assert_eq!(page.text("#route-domain").await, "no domain (abstained)");
    page.select("#filter-status", "abstained").await;
    let row = page
        .wait_for(
            "the status filter to show only the abstention",
            "document.getElementById('log-table').dataset.rows === '1'              && document.querySelector('#log-rows tr').dataset.status === 'abstained'              && [...document.querySelector('#log-rows tr').cells].map(c => c.textContent)",
        )
        .await;
    let cells = strings(&row);
    assert_eq!((cells[1], cells[7]), ("none", NONSENSE), "{cells:?}");
    assert_eq!(
        page.eval(
            "return [document.querySelectorAll('#log-rows img, #log-rows b').length,              window.__xss === undefined]"
        )
        .await,
        json!([0, true]),
        "untrusted text is inserted as text"
    );
    page.select("#filter-status", "").await;

    // Filters map to /v1/logs: another domain empties the table...
    page.select("#filter-domain", "medical").await;
    page.wait_for(
        "the medical filter to empty the table",
        "document.getElementById('log-table').dataset.rows === '0' \
         && !document.getElementById('log-empty').hidden",
    )
    .await;
    // ...and the right one with a matching text brings the row back.
    page.select("#filter-domain", "finance").await;
    page.type_into("#filter-text", "smollm2").await;
    page.wait_for(
        "the finance + smollm2 filter to show the row",
        "document.getElementById('log-table').dataset.rows === '1' \
         && document.getElementById('export-csv').href.includes('text=smollm2')",
    )
    .await;

    // The CSV export link carries the same filters and returns CSV.
    let href = page
        .on("#export-csv", "reading the link", async |e| {
            e.prop("href").await
        })
        .await
        .expect("an export link");
    let path = href
        .strip_prefix(&page.base)
        .unwrap_or_else(|| panic!("a link to this server: {href}"));
    assert!(
        path.contains("domain=finance") && path.contains("format=csv"),
        "{path}"
    );
    let path = path.to_string();
    let (head, body) = tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .expect("the export request");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    let mut lines = body.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("id,timestamp,query,")),
        "{body}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{body}");
    assert!(rows[0].contains(",finance,") && rows[0].contains(",smollm2,completed,"));
}

/// The page under test, with small helpers over WebDriver.
struct Page {
    client: Client,
    base: String,
}

impl Page {
    async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls the JS expression `condition` until it is truthy, and returns it.
    async fn wait_for(&self, what: &str, condition: &str) -> Value {
        let script = format!("return ({condition});");
        let started = Instant::now();
        loop {
            let value = self.eval(&script).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if started.elapsed() > WAIT {
                let state = self.answer_state().await;
                panic!(
                    "waited {WAIT:?} for {what}; answer {state:?}: {:?}; table rows {}",
                    self.text("#answer").await,
                    self.number("#log-table", "rows").await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// Runs one WebDriver command on the element at `css`; a failure panics
    /// saying what was being `done`.
    async fn on<T>(
        &self,
        css: &str,
        done: &str,
        command: impl AsyncFnOnce(Element) -> Result<T, CmdError>,
    ) -> T {
        command(self.find(css).await)
            .await
            .unwrap_or_else(|e| panic!("{done} {css}: {e}"))
    }

    /// Types `query` into the query box, replacing what was there, and submits it.
    async fn ask(&self, query: &str) {
        self.on("#ask-query", "clearing", async |e| e.clear().await)
            .await;
        self.type_into("#ask-query", query).await;
        self.click("#ask-submit").await;
    }

    async fn click(&self, css: &str) {
        self.on(css, "clicking", async |e| e.click().await).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on(css, "typing into", async |e| e.send_keys(text).await)
            .await;
    }

    async fn select(&self, css: &str, value: &str) {
        self.on(css, "choosing in", async |e| e.select_by_value(value).await)
            .await;
    }

    async fn text(&self, css: &str) -> String {
        self.on(css, "reading the text of", async |e| e.text().await)
            .await
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.on(css, "reading an attribute of", async |e| e.attr(name).await)
            .await
    }

    /// A `data-` attribute holding JSON (the charts' drawn values).
    async fn json(&self, css: &str, key: &str) -> Value {
        let text = self
            .attr(css, &format!("data-{key}"))
            .await
            .unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("data-{key} of {css}: {e}: {text}"))
    }

    async fn number(&self, css: &str, key: &str) -> u64 {
        self.attr(css, &format!("data-{key}"))
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The answer's state (`idle`, `routing`, `streaming`, `done`, `error`)
    /// and its text length, read in one call.
    async fn answer_state(&self) -> (String, u64) {
        let value = self
            .eval(
                "const a = document.getElementById('answer'); \
                 return [a.dataset.state, a.textContent.length]",
            )
            .await;
        (
            value[0].as_str().unwrap_or_default().to_string(),
            value[1].as_u64().unwrap_or(0),
        )
    }
}

/// The strings of a JSON list.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Grows the window until the whole page fits the viewport, so a screenshot
/// shows all of it (the window's frame takes some height of its own).
async fn fit_window_to_page(page: &Page) {
    for _ in 0..3 {
        let sizes = page
            .eval("return [document.documentElement.scrollHeight, window.innerHeight]")
            .await;
        let (wanted, inner) = (
            sizes[0].as_u64().unwrap_or(0),
            sizes[1].as_u64().unwrap_or(0),
        );
        if inner >= wanted {
            break;
        }
        let (_, outer) = page
            .client
            .get_window_size()
            .await
            .expect("the window size");
        let height = u32::try_from(outer + wanted - inner)
            .unwrap_or(4000)
            .min(4000);
        page.client
            .set_window_size(WIDTH, height)
            .await
            .expect("resizing the window");
    }
}

/// A picture of the page for people to look at, in the target folder.
async fn screenshot(page: &Page, name: &str) {
    // Let the charts redraw (after a resize or a theme switch): two frames.
    page.eval(
        "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
    )
    .await;
    let png = page.client.screenshot().await.expect("a screenshot");
    let path = target_dir().join(name);
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
}

/// The cargo target folder: this test binary lives in `target/<profile>/deps`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// A plain HTTP/1.1 GET: the status line and headers, and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting to the server");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_string(), body.to_string())
}

/// Skips the test, or fails it when CI requires the browser test to run.
fn skip(reason: &str) {
    if std::env::var_os("MDSA_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!("MDSA_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}");
    }
    eprintln!("skipping the dashboard browser test: {reason}");
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A `chromedriver` child process on a free port, killed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start(program: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let driver = Self { child, port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until(
            "chromedriver to listen",
            Duration::from_secs(30),
            || async { TcpStream::connect(addr).is_ok() },
        )
        .await;
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session with headless chromium.
async fn connect(driver: &ChromeDriver) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            // Root in CI containers has no user namespace sandbox.
            "--no-sandbox",
            "--disable-gpu",
            // Small /dev/shm in containers crashes tabs.
            "--disable-dev-shm-usage",
            format!("--window-size={WIDTH},1000"),
        ],
    });
    // Debian names the browser `chromium`, which chromedriver may not look for.
    if let Some(chromium) = find_program("chromium") {
        options["binary"] = json!(chromium);
    }
    let mut capabilities = Capabilities::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|e| panic!("starting headless chromium through chromedriver: {e}"))
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !ready().await {
        assert!(started.elapsed() < timeout, "waited {timeout:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
}
