//! `mcpgate connect` as a child process: speak newline-delimited JSON-RPC on its
//! stdin/stdout, keep its stderr, and play the browser with a script named by
//! `$BROWSER` (so every sign-in is real and headless).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const MCPGATE: &str = env!("CARGO_BIN_EXE_mcpgate");

/// A home for one user of the bridge: its token cache and its "browser".
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A browser that signs in on the gateway's real pages as alice, after
    /// `delay` seconds (to widen races), and logs every URL it was given.
    pub fn gateway_browser(&self, delay: f32) -> PathBuf {
        let login = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/oauth-login");
        self.script(&format!(
            "sleep {delay}\nexec python3 {login} browse \"$1\" alice@example.com pw-alice >/dev/null\n"
        ))
    }

    /// A browser that just follows redirects (for an authorization server that
    /// approves at once).
    pub fn redirect_browser(&self) -> PathBuf {
        self.script(
            "exec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30).read()' \"$1\"\n",
        )
    }

    /// A browser that goes wherever it is sent, as a real one does: every
    /// redirect (to an identity provider and back), cookies kept, and the
    /// `Refresh` of a page that moves on by itself.
    pub fn following_browser(&self) -> PathBuf {
        self.script(
            r#"exec python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error, http.cookiejar
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
url = sys.argv[1]
for _ in range(10):
    try:
        r = opener.open(url, timeout=30)
    except urllib.error.HTTPError as e:
        r = e
    refresh = r.headers.get('Refresh') or ''
    if 'url=' not in refresh:
        break
    url = refresh.split('url=', 1)[1].strip()
PY
"#,
        )
    }

    /// A browser that must not be needed.
    pub fn no_browser(&self) -> PathBuf {
        self.script("exit 1\n")
    }

    fn script(&self, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let log = self.path().join("browser.log");
        let path = self
            .path()
            .join(format!("browser-{}.sh", crate::common::free_port()));
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"$1\" >> '{}'\n{body}", log.display()),
        )
        .expect("write browser script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// How many times a browser was opened.
    pub fn browser_opened(&self) -> usize {
        std::fs::read_to_string(self.path().join("browser.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("config").join("mcpgate").join("connect")
    }

    /// The cached entries (one JSON file per server).
    pub fn cache_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.cache_dir())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn cached(&self) -> Value {
        let files = self.cache_files();
        assert_eq!(files.len(), 1, "one cache file: {files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read cache")).expect("cache JSON")
    }
}

pub struct Bridge {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
    /// Messages that arrived while waiting for something else.
    pub other: Vec<Value>,
}

impl Bridge {
    pub async fn start(home: &Home, browser: &Path, url: &str, args: &[&str]) -> Bridge {
        Bridge::spawn(Command::new(MCPGATE), home, browser, url, args).await
    }

    /// Without a controlling terminal (a new session), like a client started
    /// from a desktop: /dev/tty cannot be opened.
    pub async fn start_without_terminal(
        home: &Home,
        browser: &Path,
        url: &str,
        args: &[&str],
    ) -> Bridge {
        let mut cmd = Command::new("setsid");
        cmd.arg(MCPGATE);
        Bridge::spawn(cmd, home, browser, url, args).await
    }

    async fn spawn(
        mut cmd: Command,
        home: &Home,
        browser: &Path,
        url: &str,
        args: &[&str],
    ) -> Bridge {
        let mut child = cmd
            .arg("connect")
            .arg(url)
            .args(args)
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("BROWSER", browser)
            .env("CONNECT_TEST_API_KEY", "k-123")
            .env_remove("MCP_CLIENT_ID")
            .env_remove("MCP_CLIENT_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mcpgate connect");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = Arc::clone(&stderr);
        let echo = std::env::var_os("MCPGATE_TEST_LOG").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                if echo {
                    eprintln!("[connect] {line}");
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Bridge {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("stdout")).lines(),
            child,
            stderr,
            next_id: 0,
            other: Vec::new(),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub async fn send(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .expect("write to the bridge");
        stdin.flush().await.expect("flush");
    }

    /// The next line on stdout, which must be one JSON-RPC message.
    pub async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no message from the bridge in 60s; stderr:\n{}",
                    self.stderr()
                )
            })
            .expect("read stdout")
            .unwrap_or_else(|| panic!("the bridge closed stdout; stderr:\n{}", self.stderr()));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"))
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Send a request; wait for its response (other messages are kept in `other`).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.id();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(id).await
    }

    pub async fn response(&mut self, id: u64) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["id"] == json!(id) && msg.get("method").is_none() {
                return msg;
            }
            self.other.push(msg);
        }
    }

    pub async fn initialize(&mut self) -> Value {
        let answer = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "connect-tests", "version": "0"}
                }),
            )
            .await;
        if answer.get("result").is_some() {
            self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
        }
        answer
    }

    pub async fn echo(&mut self, text: &str) -> Value {
        self.request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": text}}),
        )
        .await
    }

    /// Close stdin (what a client does to stop a stdio server) and wait.
    pub async fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the bridge did not exit; stderr:\n{}", self.stderr()))
            .expect("wait");
        // Anything still on stdout must be protocol too.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(2), self.stdout.next_line()).await
        {
            serde_json::from_str::<Value>(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, self.stderr())
    }
}

/// The text of a tools/call answer.
pub fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_string()
}
