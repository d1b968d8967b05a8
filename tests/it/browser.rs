//! A headless Chromium driven over W3C WebDriver, for tests that look at pages as a person would.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free loopback port and opens a session in
//! a headless `chromium` with a throwaway profile. The client is a thin layer over `reqwest`: each
//! method is one WebDriver command, and the finders wait (up to [`WAIT`]) for what they look for.
//! Both processes are killed when the [`Browser`] is dropped (or on [`Browser::quit`]).
//!
//! Needs the `chromium` and `chromium-driver` packages (`scripts/test` installs them).

#![allow(dead_code)]

#[allow(unused_imports)]
use roster::store::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the finders wait for an element (or a text) to appear.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long chromedriver may take to answer `/status` once spawned.
const DRIVER_START: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
/// The W3C key under which an element reference travels (WebDriver spec, "web element identifier").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// WebDriver's special keys, for [`Element::send_keys`].
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const TAB: &str = "\u{E004}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const BACKSPACE: &str = "\u{E003}";
}

/// A WebDriver error answer (`error` is the W3C error code, e.g. `no such element`).
#[derive(Debug, Clone)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.error, self.status, self.message)
    }
}

/// The HTTP side of a session: shared by the [`Browser`] and its [`Element`]s.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    base: String,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("WebDriver GET {path}: {e}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
    }

    async fn delete(&self, path: &str) -> Value {
        self.call(reqwest::Method::DELETE, path, None)
            .await
            .unwrap_or_else(|e| panic!("WebDriver DELETE {path}: {e}"))
    }

    fn element(&self, v: &Value) -> Element {
        let id = v
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("not an element reference: {v}"))
            .to_owned();
        Element { session: self.clone(), id }
    }

    /// One attempt at finding `css` under `scope` (`""` for the document, `/element/ID` for an element).
    async fn find_once(&self, scope: &str, css: &str) -> Result<Option<Element>, WdError> {
        match self
            .call(
                reqwest::Method::POST,
                &format!("{scope}/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
        {
            Ok(v) => Ok(Some(self.element(&v))),
            Err(e) if e.error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_all(&self, scope: &str, css: &str) -> Vec<Element> {
        let v = self.post(&format!("{scope}/elements"), json!({"using": "css selector", "value": css})).await;
        v.as_array()
            .unwrap_or_else(|| panic!("find_all {css:?}: not a list: {v}"))
            .iter()
            .map(|e| self.element(e))
            .collect()
    }

    /// Polls until `css` appears under `scope`, or panics after [`WAIT`] with the page's URL and source.
    async fn find_waiting(&self, scope: &str, css: &str) -> Element {
        let start = Instant::now();
        loop {
            match self.find_once(scope, css).await {
                Ok(Some(e)) => return e,
                Ok(None) => {}
                Err(e) => {
                    panic!("find {css:?}{}: {e}", if scope.is_empty() { "" } else { " inside an element" })
                }
            }
            if start.elapsed() >= WAIT {
                panic!("no element matches {css:?} after {WAIT:?}{}", self.page_context().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// "on URL; page source: …" (the first 2000 characters), for failure messages.
    async fn page_context(&self) -> String {
        let url = self
            .call(reqwest::Method::GET, "/url", None)
            .await
            .map(as_string)
            .unwrap_or_else(|e| e.to_string());
        let source = self
            .call(reqwest::Method::GET, "/source", None)
            .await
            .map(as_string)
            .unwrap_or_else(|e| e.to_string());
        let head: String = source.chars().take(2000).collect();
        format!(" on {url}; page source (first 2000 chars):\n{head}")
    }
}

/// One WebDriver command: the `value` of a success answer, or the error answer.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WdError> {
    let mut req = http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.map_err(|e| WdError {
        status: 0,
        error: "transport".into(),
        message: format!("{e:#}"),
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| json!({"value": {"error": "bad answer", "message": text}}));
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    let error = value.get("error").and_then(Value::as_str);
    if status >= 400 || error.is_some() {
        return Err(WdError {
            status,
            error: error.unwrap_or("unknown error").to_owned(),
            message: value.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
        });
    }
    Ok(value)
}

fn as_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A running chromedriver + headless chromium session. Killed (with chromium) on drop.
pub struct Browser {
    session: Session,
    driver: Option<tokio::process::Child>,
    /// The chromium profile and chromedriver's log.
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless chromium session.
    pub async fn start() -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build the WebDriver HTTP client");
        let dir = tempfile::tempdir().expect("temp dir for chromium");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).unwrap();
        let log = dir.path().join("chromedriver.log");

        // The port is picked, then bound by chromedriver: retry if another process took it meanwhile.
        let mut attempt = 0;
        let (driver, port) = loop {
            attempt += 1;
            let port = crate::daemon::free_port();
            let mut driver = spawn_driver(port, &log);
            match wait_ready(&http, port, &mut driver).await {
                Ok(()) => break (driver, port),
                Err(why) if attempt < 3 => {
                    eprintln!("chromedriver on port {port}: {why}; retrying");
                    kill_group(&mut driver);
                }
                Err(why) => panic!(
                    "chromedriver did not start on port {port}: {why}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };

        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox", // we run as root
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    // Even with the flags above, chromium looks up and calls Google hosts
                    // (accounts.google.com, clients2.google.com, update.googleapis.com) at start-up.
                    // A dead proxy for everything but loopback (always bypassed) keeps it on the machine.
                    "--proxy-server=http://127.0.0.1:9",
                ],
            },
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 30_000},
            // The page's console (CSP violations land there), read with `console_log`.
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let root = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            session: Session { http: http.clone(), base: root.clone() },
            driver: Some(driver),
            dir,
            port,
        };
        let v = match call(&http, reqwest::Method::POST, &format!("{root}/session"), Some(caps)).await {
            Ok(v) => v,
            Err(e) => panic!("create a chromium session: {e}; chromedriver log:\n{}", browser.driver_log()),
        };
        let id = v.get("sessionId").and_then(Value::as_str).unwrap_or_else(|| panic!("no sessionId in {v}"));
        browser.session.base = format!("{root}/session/{id}");
        browser
    }

    /// chromedriver's output so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session.post("/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        as_string(self.session.get("/url").await)
    }

    pub async fn title(&self) -> String {
        as_string(self.session.get("/title").await)
    }

    pub async fn source(&self) -> String {
        as_string(self.session.get("/source").await)
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for one to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.session.find_waiting("", css).await
    }

    /// Every element matching `css` now (no wait; possibly none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all("", css).await
    }

    /// The first element matching `css` now, if any (no wait).
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        self.session.find_once("", css).await.unwrap_or_else(|e| panic!("find {css:?}: {e}"))
    }

    /// Waits up to [`WAIT`] until an element matching `css` has a text containing `needle`; returns it.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Element {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            seen.clear();
            if let Ok(v) = self
                .session
                .call(
                    reqwest::Method::POST,
                    "/elements",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await
            {
                for e in v.as_array().into_iter().flatten().map(|e| self.session.element(e)) {
                    // An element replaced meanwhile is stale: skip it, the next round finds the new one.
                    if let Ok(text) =
                        e.session.call(reqwest::Method::GET, &format!("/element/{}/text", e.id), None).await
                    {
                        let text = as_string(text);
                        if text.contains(needle) {
                            return e;
                        }
                        seen.push(text);
                    }
                }
            }
            if start.elapsed() >= WAIT {
                panic!(
                    "no element matching {css:?} contains {needle:?} after {WAIT:?} (texts: {seen:?}){}",
                    self.session.page_context().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's console messages since the last call (chromedriver's log of type `browser`):
    /// errors, warnings, CSP violations.
    pub async fn console_log(&self) -> Vec<String> {
        let v = self.session.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .map(|a| {
                a.iter().map(|e| format!("{} {}", e["level"], e["message"].as_str().unwrap_or(""))).collect()
            })
            .unwrap_or_default()
    }

    /// Runs `script` (a function body: `return …`, arguments in `arguments[i]`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Saves a PNG of the viewport to `path` (and returns the bytes).
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Vec<u8> {
        let b64 = as_string(self.session.get("/screenshot").await);
        let png = base64_decode(&b64).expect("screenshot is base64");
        std::fs::write(path.as_ref(), &png)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.as_ref().display()));
        png
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.session.post("/window/rect", json!({"width": width, "height": height})).await;
    }

    pub async fn back(&self) {
        self.session.post("/back", json!({})).await;
    }

    /// The current page's cookies, as WebDriver cookie objects (`name`, `value`, `path`, …).
    pub async fn cookies(&self) -> Vec<Value> {
        match self.session.get("/cookie").await {
            Value::Array(v) => v,
            other => panic!("cookies: not a list: {other}"),
        }
    }

    pub async fn delete_cookies(&self) {
        self.session.delete("/cookie").await;
    }

    /// Ends the session (chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.session.call(reqwest::Method::DELETE, "", None).await;
        if let Some(mut driver) = self.driver.take() {
            kill_group(&mut driver);
            let _ = driver.wait().await;
        }
    }

    /// Where this browser's files live (profile, chromedriver log): handy for screenshots too.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            kill_group(&mut driver);
        }
    }
}

/// chromedriver in a process group of its own, so that chromium (its child) dies with it.
fn spawn_driver(port: u16, log: &Path) -> tokio::process::Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("chromedriver log");
    tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER} (install chromium-driver: scripts/test does): {e}"))
}

async fn wait_ready(
    http: &reqwest::Client,
    port: u16,
    driver: &mut tokio::process::Child,
) -> Result<(), String> {
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/status");
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited: {status}"));
        }
        if let Ok(v) = call(http, reqwest::Method::GET, &url, None).await {
            if v.get("ready").and_then(Value::as_bool) == Some(true) {
                return Ok(());
            }
        }
        if start.elapsed() >= DRIVER_START {
            return Err(format!("/status not ready after {DRIVER_START:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGKILLs chromedriver's whole process group (chromedriver, chromium and its helpers).
fn kill_group(driver: &mut tokio::process::Child) {
    if let Some(pid) = driver.id() {
        // SAFETY: plain kill(2) on the group this Child leads (process_group(0) made pgid == pid).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    let _ = driver.start_kill();
}

/// An element of the page (a W3C element reference).
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

impl Element {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub async fn click(&self) {
        self.session.post(&self.path("/click"), json!({})).await;
    }

    pub async fn clear(&self) {
        self.session.post(&self.path("/clear"), json!({})).await;
    }

    /// Types `text` into the element (see [`keys`] for Enter and friends).
    pub async fn send_keys(&self, text: &str) {
        self.session.post(&self.path("/value"), json!({"text": text})).await;
    }

    /// The rendered (visible) text.
    pub async fn text(&self) -> String {
        as_string(self.session.get(&self.path("/text")).await)
    }

    /// The HTML attribute `name`, if set.
    pub async fn attr(&self, name: &str) -> Option<String> {
        match self.session.get(&self.path(&format!("/attribute/{name}"))).await {
            Value::Null => None,
            v => Some(as_string(v)),
        }
    }

    /// The DOM property `name` (e.g. `value`, `checked`).
    pub async fn prop(&self, name: &str) -> Value {
        self.session.get(&self.path(&format!("/property/{name}"))).await
    }

    pub async fn is_displayed(&self) -> bool {
        self.session.get(&self.path("/displayed")).await.as_bool().unwrap_or(false)
    }

    /// The first element matching `css` inside this one, waiting up to [`WAIT`].
    pub async fn find(&self, css: &str) -> Element {
        self.session.find_waiting(&self.path(""), css).await
    }

    /// Every element matching `css` inside this one now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session.find_all(&self.path(""), css).await
    }

    /// For a `<select>`: clicks its `<option value="VALUE">`.
    pub async fn select_by_value(&self, value: &str) {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        self.find(&format!("option[value=\"{escaped}\"]")).await.click().await;
    }
}

/// Standard base64 (with or without padding; whitespace ignored).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>Fixture form</title></head><body>
<form id="f">
  <input id="name" name="name" autocomplete="off">
  <select id="color"><option value="red">Red</option><option value="blue">Blue</option></select>
  <button id="go" type="submit">Go</button>
</form>
<p id="out"></p>
<script>
document.getElementById('f').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const c = document.getElementById('color').value;
  document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value + ' (' + c + ')';
});
</script>
</body></html>"#;

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
    assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    assert_eq!(base64_decode("").unwrap(), b"");
    assert!(base64_decode("a*b").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_fixture_works() {
    let app =
        axum::Router::new().route("/", axum::routing::get(|| async { axum::response::Html(FORM_PAGE) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let started = Instant::now();
    let browser = Browser::start().await;
    eprintln!("browser started in {:?}", started.elapsed());

    let url = format!("http://{addr}/");
    browser.goto(&url).await;
    assert_eq!(browser.current_url().await, url);
    assert_eq!(browser.title().await, "Fixture form");
    assert!(browser.try_find("#nothing-here").await.is_none());
    assert_eq!(browser.find_all("option").await.len(), 2);

    // Type, pick, click: the inline script writes the result.
    let input = browser.find("#name").await;
    assert!(input.is_displayed().await);
    input.send_keys("Ada").await;
    assert_eq!(input.prop("value").await, json!("Ada"));
    let select = browser.find("#color").await;
    select.select_by_value("blue").await;
    assert_eq!(select.prop("value").await, json!("blue"));
    browser.find("#go").await.click().await;
    let out = browser.wait_for_text("#out", "Hello, Ada (blue)").await;
    assert_eq!(out.text().await, "Hello, Ada (blue)");

    // Clear and submit with Enter.
    input.clear().await;
    input.send_keys(&format!("Grace{}", keys::ENTER)).await;
    browser.wait_for_text("#out", "Hello, Grace").await;
    assert_eq!(browser.find("form").await.find("button").await.attr("type").await.as_deref(), Some("submit"));
    assert_eq!(browser.execute("return arguments[0] + 1", vec![json!(41)]).await, json!(42));
    assert!(browser.source().await.contains("Fixture form"));

    let shots = tempfile::tempdir().unwrap();
    let shot = shots.path().join("form.png");
    browser.set_window_size(800, 600).await;
    let png = browser.screenshot(&shot).await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(std::fs::read(&shot).unwrap(), png);

    browser.quit().await;
}
