//! Test harness: a real `nats-server` or the real `prism-broker` binary on free loopback
//! ports with a temp data dir; readiness is awaited against a deadline and everything is
//! stopped in `Drop`, so no test leaves a process behind.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_prism-broker");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 20 ms until it returns `Some` or `deadline` passes.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn nats_server_binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into())
}

/// A bare `nats-server -js` for external-mode tests.
pub struct NatsServer {
    pub port: u16,
    pub http_port: u16,
    pub dir: TempDir,
    child: Child,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http_port = free_port();
        let log = std::fs::File::create(dir.path().join("nats.log")).unwrap();
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &http_port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(dir.path().join("js"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server must be installed (apt-get install nats-server)");
        let server = NatsServer {
            port,
            http_port,
            dir,
            child,
        };
        let url = format!("http://127.0.0.1:{http_port}/healthz");
        wait_for("nats-server /healthz", Duration::from_secs(10), || async {
            let r = reqwest::get(&url).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a config for the service: free ports, temp data dir, router off disk.
pub struct ServiceBuilder {
    pub dir: TempDir,
    pub config: Value,
    pub env: Vec<(String, String)>,
}

impl ServiceBuilder {
    pub fn new() -> ServiceBuilder {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "service": { "host": "127.0.0.1", "port": free_port(), "log_level": "info,async_nats=warn" },
            "nats": {
                "binary": nats_server_binary(),
                "port": free_port(),
                "http_port": free_port(),
                "data_dir": dir.path().join("nats"),
                "jetstream": { "max_memory": "64MB", "max_storage": "256MB" },
                "restart": { "initial_backoff": "100ms", "max_backoff": "2s" },
            },
            "router": {
                "routes_dir": dir.path().join("routes.d"),
                "transforms_dir": dir.path().join("transforms"),
                "watch": false,
            },
        });
        ServiceBuilder {
            dir,
            config,
            env: Vec::new(),
        }
    }

    /// Sets `path` (dotted) to `value`, creating objects on the way.
    pub fn set(mut self, path: &str, value: Value) -> ServiceBuilder {
        let mut node = &mut self.config;
        let keys: Vec<&str> = path.split('.').collect();
        for key in &keys[..keys.len() - 1] {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert(json!({}));
        }
        node.as_object_mut()
            .unwrap()
            .insert(keys[keys.len() - 1].to_string(), value);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> ServiceBuilder {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn api_port(&self) -> u16 {
        self.config["service"]["port"].as_u64().unwrap() as u16
    }

    pub fn nats_port(&self) -> u16 {
        self.config["nats"]["port"].as_u64().unwrap() as u16
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("broker.yaml")
    }

    /// Writes the config (JSON is YAML) and starts the binary.
    fn spawn(&self, config_text: Option<&str>) -> Child {
        let text = config_text
            .map(String::from)
            .unwrap_or_else(|| self.config.to_string());
        std::fs::write(self.config_path(), text).unwrap();
        std::fs::create_dir_all(self.dir.path().join("routes.d")).unwrap();
        std::fs::create_dir_all(self.dir.path().join("transforms")).unwrap();
        let log = std::fs::File::create(self.dir.path().join("service.log")).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // The service reads these; the test's own environment must not leak into it.
        for var in prism_broker::config::ENV_VARS {
            command.env_remove(var);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.spawn().unwrap()
    }

    /// Runs the binary expecting it to exit by itself; returns its status and output.
    pub fn run_to_exit(self, config_text: Option<&str>) -> (ExitStatus, String) {
        let mut child = self.spawn(config_text);
        let end = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("prism-broker did not exit: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        (status, log)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// Starts the service and waits until `/ready` answers 200.
    pub async fn start(self) -> Service {
        let service = self.start_unready();
        service.wait_ready(Duration::from_secs(20)).await;
        service
    }

    /// Starts the service and waits only for `/health`.
    pub fn start_unready(self) -> Service {
        let child = self.spawn(None);
        Service {
            base: format!("http://127.0.0.1:{}", self.api_port()),
            http: reqwest::Client::new(),
            builder: self,
            child: Some(child),
        }
    }
}

/// A running `prism-broker` process.
pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
    pub builder: ServiceBuilder,
    child: Option<Child>,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> &Path {
        self.builder.dir.path()
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.builder.nats_port())
    }

    /// Status and JSON body of a GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Status of `/ready`, or None while the port does not answer.
    pub async fn ready_status(&self) -> Option<u16> {
        let r = self
            .http
            .get(self.url("/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.ready_status().await == Some(200) {
                return;
            }
            if Instant::now() >= end {
                panic!(
                    "service not ready within {deadline:?}; log:\n{}",
                    self.builder.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The supervised child's pid, from `/api/v1/nats/info`.
    pub async fn nats_pid(&self) -> Option<u32> {
        let (_, body) = self.get("/api/v1/nats/info").await;
        body["data"]["pid"].as_u64().map(|p| p as u32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.builder.log()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Requests with a JSON or raw body, answering status and JSON body.
impl Service {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .timeout(Duration::from_secs(15));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A client of the service's NATS server.
    pub async fn nats_client(&self) -> async_nats::Client {
        async_nats::connect(self.nats_url()).await.unwrap()
    }
}

/// Asserts the error envelope with `code` and returns its message.
pub fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) -> String {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    body["message"].as_str().unwrap().to_string()
}

/// Rule files for the service under test.
impl ServiceBuilder {
    pub fn routes_dir(&self) -> PathBuf {
        self.dir.path().join("routes.d")
    }

    pub fn transforms_dir(&self) -> PathBuf {
        self.dir.path().join("transforms")
    }

    /// Copies the repository's `routes.d/` and `transforms/` into the service's dirs.
    pub fn shipped_rules(self) -> ServiceBuilder {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (from, to) in [
            (root.join("routes.d"), self.routes_dir()),
            (root.join("transforms"), self.transforms_dir()),
        ] {
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        self
    }

    /// Writes `routes.d/<file>`.
    pub fn route_file(self, file: &str, text: &str) -> ServiceBuilder {
        std::fs::create_dir_all(self.routes_dir()).unwrap();
        std::fs::write(self.routes_dir().join(file), text).unwrap();
        self
    }

    /// Writes `transforms/<file>`.
    pub fn transform_file(self, file: &str, text: &str) -> ServiceBuilder {
        std::fs::create_dir_all(self.transforms_dir()).unwrap();
        std::fs::write(self.transforms_dir().join(file), text).unwrap();
        self
    }
}

/// Collects messages from `sub` until `count` arrived or `deadline` passed.
pub async fn collect(
    sub: &mut async_nats::Subscriber,
    count: usize,
    deadline: Duration,
) -> Vec<async_nats::Message> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + deadline;
    while out.len() < count {
        match tokio::time::timeout_at(end, sub.next()).await {
            Ok(Some(msg)) => out.push(msg),
            _ => break,
        }
    }
    out
}

/// Messages that arrive on `sub` within `quiet` (to prove nothing more comes).
pub async fn drain(sub: &mut async_nats::Subscriber, quiet: Duration) -> Vec<async_nats::Message> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(quiet, sub.next()).await {
        out.push(msg);
    }
    out
}

/// The sample messages of `shared/data/marketprism-samples.jsonl`: (subject, headers, payload).
pub fn samples() -> Vec<(String, Option<Value>, Value)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/marketprism-samples.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let headers = (!v["headers"].is_null()).then(|| v["headers"].clone());
            (
                v["subject"].as_str().unwrap().to_string(),
                headers,
                v["payload"].clone(),
            )
        })
        .collect()
}
