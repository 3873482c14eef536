//! Test harness shared by the end-to-end tests: the real server on `127.0.0.1:0` with a temporary
//! data directory (in process, or as the `weft` binary when a test must SIGKILL it), raw WebSocket
//! clients for speaking bad input, and the Rust SDK for speaking good input.

#![allow(dead_code)]

pub mod api;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use weft::Config;
use weft_client::{ClientOptions, YjsSync};
use yrs::{Array, Doc, GetString, Text, Transact};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// The relay running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts on a fresh port with the defaults, storing under `dir`.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(Config::with_data_dir(dir)).await
    }

    /// Starts with `config` on a fresh port (the config's `listen` is ignored).
    pub async fn start_with(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        Self::serve(config, listener)
    }

    fn serve(mut config: Config, listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("bound address");
        config.listen = addr;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(weft::run(config.clone(), listener, shutdown.clone()));
        Self { addr, config, shutdown, task }
    }

    /// Shuts down gracefully and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("shutdown within the grace period")
            .expect("server task")
            .expect("server run");
    }

    /// Stops, then starts again on the same port and data directory.
    pub async fn restart(self) -> Self {
        let (addr, config) = (self.addr, self.config.clone());
        self.stop().await;
        let listener = TcpListener::bind(addr).await.expect("rebind the same port");
        Self::serve(config, listener)
    }

    pub fn yjs_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/yjs/{doc}", self.addr)
    }

    pub fn hocuspocus_url(&self) -> String {
        format!("ws://{}/ws/hocuspocus", self.addr)
    }
}

/// The `weft` binary as a child process, for tests that kill it.
pub struct ProcessServer {
    pub addr: SocketAddr,
    child: Child,
}

impl ProcessServer {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("WEFT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weft");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(WAIT).expect("weft prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Self { addr, child }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // std can only SIGKILL; the `kill` utility sends SIGTERM without any `unsafe`.
        let sent =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(sent.success(), "send SIGTERM");
        wait_with_timeout(&mut self.child, WAIT)
    }

    pub fn yjs_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/yjs/{doc}", self.addr)
    }

    pub fn hocuspocus_url(&self) -> String {
        format!("ws://{}/ws/hocuspocus", self.addr)
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket connection, for speaking bytes the SDK never would.
pub async fn raw(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Reads until the server closes; returns the close code (None if the TCP connection just ended).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await.expect("server closes in time");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Sends one binary frame.
pub async fn send(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.expect("send");
}

/// Options that reconnect quickly, for tests.
pub fn fast() -> ClientOptions {
    ClientOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

/// A synced SDK client on `url`.
pub async fn client(url: &str) -> YjsSync {
    let sync = YjsSync::start(url, Doc::new(), fast()).expect("start client");
    sync.wait_synced(WAIT).await.expect("initial sync");
    sync
}

pub fn text(doc: &Doc) -> String {
    let t = doc.get_or_insert_text("t");
    t.get_string(&doc.transact())
}

pub fn insert(doc: &Doc, at: u32, s: &str) {
    let t = doc.get_or_insert_text("t");
    t.insert(&mut doc.transact_mut(), at, s);
}

pub fn push(doc: &Doc, item: &str) {
    let a = doc.get_or_insert_array("items");
    a.push_back(&mut doc.transact_mut(), item);
}

pub fn items(doc: &Doc) -> Vec<String> {
    let a = doc.get_or_insert_array("items");
    let txn = doc.transact();
    a.iter(&txn).map(|v| v.to_string(&txn)).collect()
}

/// Waits until `f` holds, polling; fails with `what`.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("weft.sqlite3")
}

/// Logs to the test output when `WEFT_TEST_LOG` is set (for example `WEFT_TEST_LOG=weft=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("WEFT_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}
