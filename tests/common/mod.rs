//! Test harness: a real `nats-server` or the real `prism-broker` binary on loopback with a
//! temp data dir; readiness is awaited against a deadline and everything is stopped in
//! `Drop`, so no test leaves a process behind.
//!
//! **Ports are never raced for.** Every server is started with port `0` (nats-server
//! `-1`): the OS or nats-server picks a free port while binding it, and the harness reads
//! the real ports back (the broker's `service.ports_file`, nats-server's ports file).
//! Picking a "free" port first and handing it to a process later races with every other
//! test process that does the same. The one exception is [`reserve_cluster_port`].

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_prism-broker");

/// How long a started process gets to write its ports file (it includes the supervised
/// nats-server's start-up, bounded by its own `ready_timeout`).
const PORTS_DEADLINE: Duration = Duration::from_secs(30);

/// A TCP port on 127.0.0.1 that nothing listens on, held for as long as this lives: the
/// socket is bound but not listening, so connections to the port are refused and no other
/// process can bind it meanwhile (for "nothing answers there" cases).
pub struct UnusedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

pub fn unused_port() -> UnusedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    UnusedPort {
        port,
        _socket: socket,
    }
}

/// A port reserved for a cluster seed; the reservation ends when this is dropped.
#[derive(Debug)]
pub struct ReservedPort {
    pub port: u16,
    _lock: std::fs::File,
}

/// Lock files of [`reserve_cluster_port`], shared by every test process of the machine.
fn reservation_dir() -> PathBuf {
    std::env::temp_dir().join("prism-broker-test-ports")
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`).
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".into());
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// A port that a JetStream cluster's first node can be *configured* with before it starts.
///
/// Why it exists: a JetStream cluster node refuses to start without at least one configured
/// route, so the seed's route address (another node's cluster port) must be known before
/// any node listens — port 0 cannot be used for it. Every other port in the tests is 0.
///
/// Why it is race-free: the port is taken *below* the kernel's ephemeral range, where
/// neither port-0 binds nor outgoing connections ever land, so only a fixed configuration
/// could collide with it; among test processes (nextest runs many at once) an exclusive
/// `flock` on a per-port lock file in a shared temp dir, held for the life of the
/// returned [`ReservedPort`], makes sure no two pick the same port; and a bind checks
/// that nothing else listens there right now.
pub fn reserve_cluster_port() -> ReservedPort {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let (low, _) = ephemeral_range();
    // The 2,000 ports just below the range (30768..=32767 for Linux's default range),
    // clear of the usual fixed ports (4222, 6222, 8086, 8222) and of config/cluster/.
    let span = 2000u16.min(low.saturating_sub(10_000));
    assert!(
        span >= 100,
        "ephemeral port range starts at {low}: no room below it for cluster ports"
    );
    let first = low - span;
    let dir = reservation_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let seed = std::process::id() + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 7;
    for i in 0..u32::from(span) {
        let port = first + ((seed + i) % u32::from(span)) as u16;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
            .unwrap();
        if lock.try_lock().is_err() {
            continue; // another test holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something outside the tests listens there
        }
        return ReservedPort { port, _lock: lock };
    }
    panic!("no port free in {first}..{low} for a cluster seed");
}

/// The HTTP client of a [`Service`]. An idle pooled connection is dropped after 2 s, before
/// the broker's keep-alive (actix-web: 5 s) closes it: reusing a connection the server is
/// closing at that very moment answers "connection reset" instead of a response.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// One look at a broker's ports file: its ports once `child` wrote it, None before; panics
/// when the child exited first or `end` passed.
fn poll_ports_file(
    builder: &ServiceBuilder,
    child: &mut Child,
    end: Instant,
) -> Option<ServicePorts> {
    let pid = child.id();
    let found = std::fs::read_to_string(builder.ports_file())
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| ServicePorts::from_json(&v))
        .filter(|ports| ports.pid == pid);
    if found.is_some() {
        return found;
    }
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "prism-broker exited ({status}) before it listened; log:\n{}",
            builder.log()
        );
    }
    if Instant::now() >= end {
        panic!(
            "prism-broker wrote no ports file within {PORTS_DEADLINE:?}; log:\n{}",
            builder.log()
        );
    }
    None
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

/// A bare `nats-server -js` for external-mode tests, on ports it picks itself.
pub struct NatsServer {
    pub port: u16,
    pub http_port: u16,
    pub dir: TempDir,
    child: Child,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        NatsServer::start_configured(None).await
    }

    /// [`NatsServer::start`] reading the config text `conf` first (the command line's
    /// ports, address and store dir win), e.g. `jetstream { max_file_store: 8GB }` for
    /// streams whose `max_bytes` JetStream reserves up front on a nearly full disk.
    pub async fn start_configured(conf: Option<&str>) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("nats.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(nats_server_binary());
        if let Some(conf) = conf {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, conf).unwrap();
            command.arg("-c").arg(path);
        }
        let mut child = command
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd"])
            .arg(dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server must be installed (apt-get install nats-server)");
        let pid = child.id();
        let end = Instant::now() + PORTS_DEADLINE;
        let ports = loop {
            match prism_broker::nats::server_conf::read_ports_file(dir.path(), pid) {
                Ok(ports) => break ports,
                Err(e) => {
                    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("nats-server exited ({status}): {}", log());
                    }
                    assert!(Instant::now() < end, "nats-server: {e}; log:\n{}", log());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let (port, http_port) = (ports.client, ports.http);
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

/// Builds a config for the service: every port 0 (read back from the ports file once it
/// listens), temp data dir, router off disk.
pub struct ServiceBuilder {
    pub dir: TempDir,
    pub config: Value,
    pub env: Vec<(String, String)>,
}

/// What a started broker listens on, from its `service.ports_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePorts {
    pub pid: u32,
    pub api: u16,
    /// None in external mode.
    pub nats: Option<u16>,
    pub nats_http: Option<u16>,
    pub nats_cluster: Option<u16>,
    /// The URLs the broker's own client connects to.
    pub nats_urls: Vec<String>,
}

impl ServicePorts {
    fn from_json(v: &Value) -> Option<ServicePorts> {
        let port = |v: &Value| v.as_u64().map(|p| p as u16);
        Some(ServicePorts {
            pid: v["pid"].as_u64()? as u32,
            api: port(&v["api"]["port"])?,
            nats: port(&v["nats"]["port"]),
            nats_http: port(&v["nats"]["http_port"]),
            nats_cluster: port(&v["nats"]["cluster_port"]),
            nats_urls: v["nats"]["urls"]
                .as_array()?
                .iter()
                .filter_map(|u| u.as_str().map(String::from))
                .collect(),
        })
    }
}

impl ServiceBuilder {
    pub fn new() -> ServiceBuilder {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "service": {
                "host": "127.0.0.1",
                "port": 0,
                "ports_file": dir.path().join("ports.json"),
                "log_level": "info,async_nats=warn",
            },
            "nats": {
                "binary": nats_server_binary(),
                "port": 0,
                "http_port": 0,
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

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("broker.yaml")
    }

    /// Where the service writes its ports (`service.ports_file`).
    pub fn ports_file(&self) -> PathBuf {
        PathBuf::from(self.config["service"]["ports_file"].as_str().unwrap())
    }

    /// Writes the config (JSON is YAML) and starts the binary.
    fn spawn(&self, config_text: Option<&str>) -> Child {
        let text = config_text
            .map(String::from)
            .unwrap_or_else(|| self.config.to_string());
        std::fs::write(self.config_path(), text).unwrap();
        // A file left by an earlier (killed) run must not be taken for this one's.
        let _ = std::fs::remove_file(self.ports_file());
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
        let service = self.start_listening().await;
        service.wait_ready(Duration::from_secs(20)).await;
        service
    }

    /// Starts the service and waits until it listens (its ports file is written), not
    /// for readiness.
    pub async fn start_listening(self) -> Service {
        let mut child = self.spawn(None);
        let end = Instant::now() + PORTS_DEADLINE;
        loop {
            if let Some(ports) = poll_ports_file(&self, &mut child, end) {
                return Service::new(self, child, ports);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`ServiceBuilder::start_listening`] for callers that cannot await; blocks the
    /// calling thread meanwhile.
    pub fn start_unready(self) -> Service {
        let mut child = self.spawn(None);
        let end = Instant::now() + PORTS_DEADLINE;
        loop {
            if let Some(ports) = poll_ports_file(&self, &mut child, end) {
                return Service::new(self, child, ports);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `prism-broker` process.
pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
    /// The ports it really listens on (kept across restarts of its nats-server).
    pub ports: ServicePorts,
    pub builder: ServiceBuilder,
    child: Option<Child>,
}

impl Service {
    fn new(builder: ServiceBuilder, child: Child, ports: ServicePorts) -> Service {
        Service {
            base: format!("http://127.0.0.1:{}", ports.api),
            http: http_client(),
            ports,
            builder,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn api_port(&self) -> u16 {
        self.ports.api
    }

    /// Client port of the supervised nats-server (panics in external mode).
    pub fn nats_port(&self) -> u16 {
        self.ports.nats.expect("supervised nats-server")
    }

    /// Monitoring port of the supervised nats-server (panics in external mode).
    pub fn nats_http_port(&self) -> u16 {
        self.ports.nats_http.expect("supervised nats-server")
    }

    /// Route port of the supervised nats-server, when it is clustered.
    pub fn nats_cluster_port(&self) -> Option<u16> {
        self.ports.nats_cluster
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> &Path {
        self.builder.dir.path()
    }

    /// The NATS server the broker's client uses (its supervised child, or the first
    /// external URL).
    pub fn nats_url(&self) -> String {
        self.ports.nats_urls[0].clone()
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

    /// The supervised nats-server's pid from its pid file (no request: works while the
    /// broker is stuck).
    pub fn nats_pid_from_file(&self) -> Option<u32> {
        let dir = self.builder.config["nats"]["data_dir"].as_str()?;
        let text = std::fs::read_to_string(Path::new(dir).join("nats-server.pid")).ok()?;
        text.trim().parse().ok()
    }

    /// `kill -9` of the broker: its supervised nats-server dies with it
    /// (`PR_SET_PDEATHSIG`). Returns once both are gone, with the builder (same data dir and
    /// config) for a restart.
    pub fn kill9(mut self) -> ServiceBuilder {
        let nats_pid = self.nats_pid_from_file();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = nats_pid {
            let end = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) {
                assert!(
                    Instant::now() < end,
                    "nats-server {pid} outlived its killed broker"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.take_builder()
    }

    /// SIGTERM and wait for the exit (graceful shutdown); returns the exit status (`None`
    /// when it did not exit within `deadline` and was killed) and the builder.
    pub fn stop(mut self, deadline: Duration) -> (Option<ExitStatus>, ServiceBuilder) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(deadline);
        if status.is_none() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        (status, self.take_builder())
    }

    /// The builder, leaving a throwaway one behind (`Service` has a `Drop`).
    fn take_builder(&mut self) -> ServiceBuilder {
        std::mem::replace(&mut self.builder, ServiceBuilder::new())
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

    /// Status, `Retry-After` and JSON body of a POST of `body` as given.
    pub async fn post_text(&self, path: &str, body: &str) -> (u16, Option<String>, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry_after, r.json().await.unwrap_or(Value::Null))
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

/// Waits until the server processed everything `client` sent so far, its subscriptions
/// included. `flush()` only empties the client's socket buffer: a message published from
/// another connection right after it may still reach the server before the SUB. A message
/// this client sends to itself and gets back is a round trip through the server.
pub async fn server_sync(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the server answers a round trip")
        .expect("the subscription stays open");
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
