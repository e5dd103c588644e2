//! Debian's headless Chromium driven through WebDriver (chromedriver), with a thin W3C
//! WebDriver client over reqwest. (fantoccini and thirtyfour bring a second TLS stack
//! with a C crypto build for a protocol that here only ever speaks plain HTTP to
//! localhost; the dozen commands the tests use are below.)
//!
//! Every wait polls against a generous deadline, never a fixed sleep: CI machines are
//! small and busy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// How long any one thing may take to appear.
const DEADLINE: Duration = Duration::from_secs(30);
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// A chromedriver process of this test's own.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start() -> Driver {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let http = reqwest::Client::new();
        // A free port, then chromedriver on it; another process may take it between the
        // two, so try a few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(&program)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} not runnable ({e}): install Debian's chromium and chromium-driver (.ci/run does)")
                });
            let mut driver = Driver {
                child,
                base: format!("http://127.0.0.1:{port}"),
                http: http.clone(),
            };
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = driver.child.try_wait() {
                    break; // exited: the port was taken
                }
                if let Ok(res) = http.get(format!("{}/status", driver.base)).send().await {
                    if res.status().is_success() {
                        return driver;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = driver.child.kill();
        }
        panic!("chromedriver did not start");
    }

    /// A new headless Chromium window with a fresh profile.
    pub async fn browser(&self, name: &str) -> Browser {
        self.open(name, true).await
    }

    /// The same with JavaScript switched off: the pages must work as plain HTML.
    pub async fn browser_without_js(&self, name: &str) -> Browser {
        self.open(name, false).await
    }

    async fn open(&self, name: &str, javascript: bool) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        // Chromium's content setting: 2 blocks scripts on every site.
        let prefs = if javascript {
            json!({})
        } else {
            json!({"profile.managed_default_content_settings.javascript": 2})
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args, "prefs": prefs},
        }}});
        let res = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {body}"))
            .to_owned();
        Browser {
            http: self.http.clone(),
            url: format!("{}/session/{session}", self.base),
            name: name.to_owned(),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window (one person), with its own cookies.
pub struct Browser {
    http: reqwest::Client,
    url: String,
    name: String,
    _profile: tempfile::TempDir,
}

#[derive(Clone)]
pub struct Element(String);

impl Browser {
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.map_err(|e| e.to_string())?;
        let ok = res.status().is_success();
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(body["value"].clone())
        } else {
            Err(body["value"]["message"]
                .as_str()
                .unwrap_or("WebDriver error")
                .to_owned())
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await.unwrap();
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.unwrap().as_str().unwrap().to_owned()
    }

    /// Wait until the page's address contains `fragment` (a form's answer loaded: the old
    /// page's elements match nothing then); whether it did in time.
    pub async fn wait_for_url(&self, fragment: &str) -> bool {
        let deadline = Instant::now() + DEADLINE;
        while !self.current_url().await.contains(fragment) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    async fn find(&self, css: &str) -> Option<Element> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await
            .ok()?;
        found[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
    }

    /// Whether an element matching `css` is on the page now (no waiting).
    pub async fn find_now(&self, css: &str) -> bool {
        self.find(css).await.is_some()
    }

    async fn displayed(&self, element: &Element) -> bool {
        self.get(&format!("/element/{}/displayed", element.0))
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    async fn text_of(&self, element: &Element) -> Option<String> {
        self.get(&format!("/element/{}/text", element.0))
            .await
            .ok()?
            .as_str()
            .map(str::to_owned)
    }

    /// The first element matching `css` once it is on the page and visible.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(element) = self.find(css).await {
                if self.displayed(&element).await {
                    return element;
                }
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {css} did not appear on {}",
                self.name,
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the visible element `css` contains `text`; its whole text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        self.wait_for_text_within(css, text, DEADLINE).await
    }

    pub async fn wait_for_text_within(&self, css: &str, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            if let Some(element) = self.find(css).await {
                if self.displayed(&element).await {
                    last = self.text_of(&element).await.unwrap_or_default();
                    if last.contains(text) {
                        return last;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {css} never said {text:?} (last: {last:?}) on {}",
                self.name,
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        let body = self.wait_for("body").await;
        self.text_of(&body).await.unwrap_or_default()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await
            .unwrap();
        self.post(
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await
        .unwrap();
    }

    /// Click (a form's button: chromedriver waits for the page it loads).
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .unwrap();
    }

    async fn resize(&self, (width, height): (u32, u32)) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .unwrap();
    }

    /// Save the page at desktop and phone width; print where.
    pub async fn screenshots(&self, shots: &Shots, step: &str) {
        for (label, size) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(size).await;
            let png = self.get("/screenshot").await.unwrap();
            let png = base64::engine::general_purpose::STANDARD
                .decode(png.as_str().unwrap())
                .unwrap();
            let path = shots.path(&format!("{step}-{}-{label}", self.name));
            std::fs::write(&path, png).unwrap();
            println!("screenshot: {}", path.display());
        }
        self.resize(DESKTOP).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (and its Chromium) from a thread: Drop cannot await.
        let (http, url) = (self.http.clone(), self.url.clone());
        ticketing_kit::testing::block_on_own_thread(async move {
            let _ = http
                .delete(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
        });
    }
}

/// The test's screenshot folder: `target/browser-screenshots/<test>/`, emptied first.
pub struct Shots {
    dir: PathBuf,
    count: std::sync::atomic::AtomicU32,
}

impl Shots {
    pub fn new(test: &str) -> Shots {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dir = target.join("browser-screenshots").join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots {
            dir,
            count: Default::default(),
        }
    }

    /// The desktop screenshot of `step` (the last one taken of that name).
    pub fn desktop(&self, step: &str) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.contains(&format!("-{step}-")) && n.ends_with("-desktop.png")
                })
            })
            .collect();
        found.sort();
        found.pop().expect("a screenshot of that step")
    }

    fn path(&self, name: &str) -> PathBuf {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.join(format!("{n:02}-{name}.png"))
    }
}
