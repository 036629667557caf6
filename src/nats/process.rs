//! `NatsProcessActor`: owns the supervised `nats-server` child. It writes the generated
//! config, has the server test it, starts the child with its output going to a log file
//! under `data_dir`, reads the ports the child really listens on from its ports file,
//! waits for `/healthz?js-enabled-only=true` (a cluster node is up before its cluster has a
//! meta leader), restarts a child that died with capped exponential backoff, and stops the
//! child gracefully (SIGTERM, wait, SIGKILL) on shutdown.
//!
//! **Probe.** Every second it asks the child's `/jsz` (bounded by [`PROBE_TIMEOUT`]): the
//! answer is the `/jsz` snapshot the rest of the service reads ([`NatsState::jsz`]), and
//! whether JetStream answers and when it last did goes into [`NatsState`]. A child whose
//! JetStream has not answered for `nats.hang_timeout` (a hung server, e.g. nats-server 2.9
//! with a full disk, or a stopped process) is killed and restarted: a hang restart, counted
//! and logged like a crash. A clustered child's log is also watched for a duplicate server
//! name reported by a peer.
//!
//! **Crashes.** Every unexpected exit and hang restart is a crash: counted, logged with the
//! recent crashes (`nats.restart.crash_window`) and reported as a crash loop from
//! `nats.restart.crash_loop_after` on. The backoff is capped by `nats.restart.max_backoff`
//! (2 s by default), so even a crash loop leaves the service publishing again within
//! seconds of each crash.
//!
//! A port configured as `0` is picked by nats-server at the first start; the actor then
//! pins it, so every restart of the child listens on the same ports (clients and cluster
//! peers reconnect to the address they know).
//!
//! No orphan is left behind: the child gets `PR_SET_PDEATHSIG(SIGKILL)` so it dies with us
//! even when we are killed, and a pid file left by an earlier run whose server still runs
//! from our config is killed before the next start, so its ports are free again.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::server_conf::{self, BrokerCredentials, PortsFileError, ServerPaths};
use super::state::{NatsState, ServerPorts};
use crate::config::NatsConfig;

/// How often the child's JetStream is probed (`/jsz`).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this much of the child's log is read per probe when looking for a duplicate
/// server name.
const LOG_SCAN_LIMIT: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum NatsProcessError {
    #[error(
        "nats-server binary {0:?} not found; install it with `apt-get install nats-server` \
         (Debian/Ubuntu) or set nats.binary to its path"
    )]
    BinaryNotFound(String),
    #[error("port {port} ({field}) is already in use on {host}; stop what listens there or choose another port")]
    PortInUse {
        host: String,
        port: u16,
        field: &'static str,
    },
    #[error("cannot bind {host}:{port} ({field}): {source}")]
    PortCheck {
        host: String,
        port: u16,
        field: &'static str,
        source: io::Error,
    },
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("nats-server rejected the generated config {path}: {output}")]
    ConfigRejected { path: String, output: String },
    #[error("cannot start nats-server: {0}")]
    Spawn(io::Error),
    #[error("nats-server exited during start-up ({status}); last log lines: {log}")]
    ExitedEarly { status: String, log: String },
    #[error("nats-server did not become ready within {timeout:?}: {detail}")]
    NotReady { detail: String, timeout: Duration },
    #[error("nats-server is being stopped")]
    Stopping,
}

/// Resolves `nats.binary`: a path is taken as it is, a bare name is looked up on PATH.
pub fn find_binary(binary: &str) -> Result<PathBuf, NatsProcessError> {
    let is_executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(NatsProcessError::BinaryNotFound(binary.to_string()))
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| NatsProcessError::BinaryNotFound(binary.to_string()))
}

/// Everything needed to launch one child; cloned into the async start-up future. Its
/// `config` carries the pinned ports once the first child picked them.
#[derive(Debug, Clone)]
struct Launcher {
    config: NatsConfig,
    credentials: Option<BrokerCredentials>,
    binary: PathBuf,
    paths: ServerPaths,
    http: reqwest::Client,
}

/// A child that passed its readiness probe, and the ports it listens on.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    ports: ServerPorts,
}

impl Launcher {
    /// The fixed ports of the config (a `0` is left to the server and not checked).
    fn ports(&self) -> Vec<(&'static str, u16)> {
        let mut ports = vec![
            ("nats.port", self.config.port),
            ("nats.http_port", self.config.http_port),
        ];
        if self.config.cluster.name.is_some() {
            ports.push(("nats.cluster.port", self.config.cluster.port));
        }
        ports.retain(|(_, port)| *port != 0);
        ports
    }

    /// Fails with `PortInUse` naming the first port something else listens on.
    fn check_ports(&self) -> Result<(), NatsProcessError> {
        let host = self.config.host.as_str();
        for (field, port) in self.ports() {
            if let Err(source) = TcpListener::bind((host, port)) {
                return Err(if source.kind() == io::ErrorKind::AddrInUse {
                    NatsProcessError::PortInUse {
                        host: host.to_string(),
                        port,
                        field,
                    }
                } else {
                    NatsProcessError::PortCheck {
                        host: host.to_string(),
                        port,
                        field,
                        source,
                    }
                });
            }
        }
        Ok(())
    }

    /// Kills a server that an earlier run of ours left behind (its pid file names a live
    /// nats-server started from our config file).
    async fn kill_stale(&self) {
        let Ok(text) = std::fs::read_to_string(&self.paths.pid_file) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains("nats-server")
            && cmdline.contains(&self.paths.config_file.display().to_string());
        if !ours {
            return;
        }
        warn!(pid, "killing a nats-server left running by an earlier run");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_file(&self.paths.pid_file);
    }

    fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NatsProcessError + '_ {
        move |source| NatsProcessError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Writes the server config (to a temp file renamed over it, so a reader never sees
    /// half of it).
    fn write_config_file(&self) -> Result<(), NatsProcessError> {
        std::fs::create_dir_all(&self.paths.store_dir)
            .map_err(Self::io_err(&self.paths.store_dir))?;
        let text = server_conf::render(&self.config, &self.paths, self.credentials.as_ref());
        let tmp = self.paths.config_file.with_extension("conf.tmp");
        std::fs::write(&tmp, text).map_err(Self::io_err(&tmp))?;
        std::fs::rename(&tmp, &self.paths.config_file)
            .map_err(Self::io_err(&self.paths.config_file))
    }

    /// Writes the server config and has `nats-server -t` check it.
    async fn write_config(&self) -> Result<(), NatsProcessError> {
        self.write_config_file()?;
        let output = tokio::process::Command::new(&self.binary)
            .arg("-t")
            .arg("-c")
            .arg(&self.paths.config_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(NatsProcessError::Spawn)?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
            if text.is_empty() {
                text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            }
            return Err(NatsProcessError::ConfigRejected {
                path: self.paths.config_file.display().to_string(),
                output: text.replace('\n', "; "),
            });
        }
        Ok(())
    }

    /// Starts the child, reads its ports file and waits until `/healthz` answers 200.
    async fn launch(&self) -> Result<Running, NatsProcessError> {
        self.kill_stale().await;
        self.check_ports()?;
        // The config carries the pinned ports of an earlier child, if any.
        self.write_config_file()?;
        server_conf::remove_stale_ports_files(&self.paths.data_dir);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.log_file)
            .map_err(Self::io_err(&self.paths.log_file))?;
        let log_err = log
            .try_clone()
            .map_err(Self::io_err(&self.paths.log_file))?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&self.paths.config_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a terminal's Ctrl-C reaches us, and we stop the child.
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
            });
        }
        let mut child = command.spawn().map_err(NatsProcessError::Spawn)?;
        let pid = child.id().unwrap_or_default();
        info!(pid, "nats-server started");

        let timeout = self.config.ready_timeout.duration();
        let deadline = Instant::now() + timeout;
        let mut ports: Option<ServerPorts> = None;
        let mut last_problem = PortsFileError::Missing(pid).to_string();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NatsProcessError::ExitedEarly {
                    status: status.to_string(),
                    log: tail_lines(&self.paths.log_file, 5),
                });
            }
            if ports.is_none() {
                // Written by the server once it listens; possibly half-written: retried.
                match server_conf::read_ports_file(&self.paths.data_dir, pid) {
                    Ok(found) => {
                        info!(
                            pid,
                            port = found.client,
                            http_port = found.http,
                            cluster_port = found.cluster,
                            "nats-server listening"
                        );
                        last_problem = format!(
                            "http://{}:{}/healthz?js-enabled-only=true did not answer 200",
                            self.config.local_url_host(),
                            found.http
                        );
                        ports = Some(found);
                    }
                    Err(e) => last_problem = e.to_string(),
                }
            }
            if let Some(ports) = ports {
                // JetStream enabled is enough: a cluster node has no meta leader until its
                // peers answer, and must be up for them to.
                let url = format!(
                    "http://{}:{}/healthz?js-enabled-only=true",
                    self.config.local_url_host(),
                    ports.http
                );
                let ok = self
                    .http
                    .get(&url)
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    return Ok(Running { child, pid, ports });
                }
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(NatsProcessError::NotReady {
                    detail: last_problem,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The last `n` non-empty lines of a file, joined with ` | `.
fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Supervises the `nats-server` child. Start it with [`actix::Supervisor`]; send
/// [`StartServer`] once and await it before connecting clients, [`StopServer`] on shutdown.
pub struct NatsProcessActor {
    launcher: Launcher,
    state: Arc<NatsState>,
    /// Bumped at each launch; exits of older children are ignored.
    generation: u64,
    pid: Option<u32>,
    /// Flips to true when the current child has exited.
    exited: Option<watch::Receiver<bool>>,
    backoff: Duration,
    up_since: Option<Instant>,
    stopping: bool,
    restart_pending: bool,
    /// A `/jsz` probe is in flight.
    probing: bool,
    /// The generation of a child killed because its JetStream stopped answering.
    hang_killed: Option<u64>,
    /// How far the child's log has been scanned for duplicate server names.
    log_offset: u64,
}

impl NatsProcessActor {
    pub fn new(
        mut config: NatsConfig,
        binary: PathBuf,
        credentials: Option<BrokerCredentials>,
        state: Arc<NatsState>,
    ) -> Self {
        let data_dir = absolute(&config.data_dir);
        let backoff = config.restart.initial_backoff.duration();
        // Fixed now: the default name must not follow a picked port once it is pinned.
        if config.server_name.is_none() {
            config.server_name = Some(server_conf::default_server_name(&config));
        }
        NatsProcessActor {
            launcher: Launcher {
                paths: ServerPaths::under(&data_dir),
                config,
                credentials,
                binary,
                http: reqwest::Client::new(),
            },
            state,
            generation: 0,
            pid: None,
            exited: None,
            backoff,
            up_since: None,
            stopping: false,
            restart_pending: false,
            probing: false,
            hang_killed: None,
            log_offset: 0,
        }
    }

    /// Takes over a child that passed readiness: records it and its ports, pins the
    /// ports for the next restarts, and watches for its exit.
    fn adopt(&mut self, running: Running, ctx: &mut Context<Self>) {
        let Running {
            mut child,
            pid,
            ports,
        } = running;
        self.generation += 1;
        let generation = self.generation;
        self.pid = Some(pid);
        self.up_since = Some(Instant::now());
        pin_ports(&mut self.launcher.config, ports);
        self.state.set_ports(ports);
        self.state.reset_probe();
        self.state.mark_up(pid);
        // Only what this child logs from now on is scanned.
        self.log_offset = std::fs::metadata(&self.launcher.paths.log_file)
            .map(|m| m.len())
            .unwrap_or(0);
        let (tx, rx) = watch::channel(false);
        self.exited = Some(rx);
        let addr = ctx.address();
        actix::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = tx.send(true);
            addr.do_send(ChildExited { generation, status });
        });
        self.probe(ctx);
    }

    fn schedule_restart(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.restart_pending {
            return;
        }
        self.restart_pending = true;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.launcher.config.restart.max_backoff.duration());
        info!(
            delay_ms = delay.as_millis() as u64,
            "restarting nats-server after backoff"
        );
        ctx.run_later(delay, |act, ctx| {
            let launcher = act.launcher.clone();
            ctx.spawn(async move { launcher.launch().await }.into_actor(act).map(
                |result, act, ctx| {
                    act.restart_pending = false;
                    if act.stopping {
                        if let Ok(mut running) = result {
                            let _ = running.child.start_kill();
                        }
                        return;
                    }
                    match result {
                        Ok(running) => {
                            act.state.count_restart();
                            info!(
                                pid = running.pid,
                                restarts = act.state.restarts(),
                                "nats-server restarted"
                            );
                            act.adopt(running, ctx);
                        }
                        Err(e) => {
                            error!(error = %e, "nats-server restart failed");
                            act.state.set_error(Some(e.to_string()));
                            act.schedule_restart(ctx);
                        }
                    }
                },
            ));
        });
    }

    /// One probe tick: a child whose JetStream has been silent too long is killed, a
    /// clustered child's new log lines are scanned, and a `/jsz` probe is started unless
    /// one is in flight.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(pid) = self.pid else {
            return;
        };
        if self.stopping || !self.state.server_up() {
            return;
        }
        if self.kill_if_hung(pid) {
            return;
        }
        if self.launcher.config.clustered() {
            self.scan_log();
        }
        if self.probing {
            return;
        }
        self.probing = true;
        let generation = self.generation;
        let http = self.launcher.http.clone();
        let url = self.launcher.config.monitor_url("/jsz");
        ctx.spawn(
            async move { probe_jsz(&http, &url).await }
                .into_actor(self)
                .map(move |outcome, act, _ctx| {
                    act.probing = false;
                    if generation != act.generation || !act.state.server_up() {
                        return;
                    }
                    let was_answering = act.state.jetstream_probe().answering;
                    match &outcome {
                        Err(e) if was_answering => {
                            warn!(error = %e, "nats-server jetstream did not answer the probe")
                        }
                        Ok(_) if !was_answering => info!("nats-server jetstream answers again"),
                        _ => {}
                    }
                    act.state.record_probe(outcome);
                }),
        );
    }

    /// Kills the child when its JetStream has not answered for `nats.hang_timeout`.
    fn kill_if_hung(&mut self, pid: u32) -> bool {
        let timeout = self.launcher.config.hang_timeout.duration();
        if timeout.is_zero() || self.hang_killed == Some(self.generation) {
            return false;
        }
        let Some((silent, why)) = self.state.jetstream_silence() else {
            return false;
        };
        if silent < timeout {
            return false;
        }
        error!(
            pid,
            silent_ms = silent.as_millis() as u64,
            hang_timeout_ms = timeout.as_millis() as u64,
            error = %why,
            "nats-server jetstream stopped answering; killing the hung server to restart it"
        );
        self.hang_killed = Some(self.generation);
        self.state.set_error(Some(format!(
            "nats-server jetstream did not answer for {:.1}s ({why}); restarting it",
            silent.as_secs_f64()
        )));
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        true
    }

    /// Looks for `duplicate name` in what the child logged since the last scan.
    fn scan_log(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.launcher.paths.log_file;
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.log_offset {
            self.log_offset = 0; // truncated or replaced
        }
        let start = self.log_offset.max(len.saturating_sub(LOG_SCAN_LIMIT));
        if start >= len || file.seek(SeekFrom::Start(start)).is_err() {
            self.log_offset = len;
            return;
        }
        let mut text = Vec::new();
        let _ = file.take(len - start).read_to_end(&mut text);
        self.log_offset = len;
        if let Some(name) = duplicate_name_in(&String::from_utf8_lossy(&text)) {
            if self.state.duplicate_name().is_none() {
                error!(
                    server_name = %name,
                    "a cluster peer has the same server name; routes to it are refused (nats.server_name must be unique per node)"
                );
            }
            self.state.record_duplicate_name(name);
        }
    }
}

/// The last server name that nats-server logged as a duplicate
/// (`Remote server has a duplicate name: "node1"`).
fn duplicate_name_in(log: &str) -> Option<String> {
    const MARK: &str = "duplicate name: \"";
    let at = log.rfind(MARK)? + MARK.len();
    let rest = &log[at..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// One `/jsz` probe: the body when JetStream answered and is enabled.
async fn probe_jsz(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let response = http
        .get(url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("/jsz did not answer within {PROBE_TIMEOUT:?}")
            } else {
                format!("/jsz failed: {e}")
            }
        })?;
    if !response.status().is_success() {
        return Err(format!("/jsz answered {}", response.status()));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("/jsz answer unreadable: {e}"))?;
    if body.get("disabled").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err("jetstream is disabled on the server".into());
    }
    Ok(body)
}

/// Writes the ports a child listens on into `config`, so the next child gets the same.
pub fn pin_ports(config: &mut NatsConfig, ports: ServerPorts) {
    config.port = ports.client;
    config.http_port = ports.http;
    if let (Some(_), Some(cluster)) = (&config.cluster.name, ports.cluster) {
        config.cluster.port = cluster;
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

impl Actor for NatsProcessActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PROBE_INTERVAL, |act, ctx| act.probe(ctx));
    }
}

impl Supervised for NatsProcessActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!("nats process actor restarting");
    }
}

/// Prepares the config, starts the child and waits for readiness. Send once at start-up;
/// answers the child's pid and the ports it listens on (pinned for its restarts).
#[derive(Message)]
#[rtype(result = "Result<(u32, ServerPorts), NatsProcessError>")]
pub struct StartServer;

impl Handler<StartServer> for NatsProcessActor {
    type Result = ResponseActFuture<Self, Result<(u32, ServerPorts), NatsProcessError>>;

    fn handle(&mut self, _msg: StartServer, _ctx: &mut Context<Self>) -> Self::Result {
        let launcher = self.launcher.clone();
        Box::pin(
            async move {
                launcher.write_config().await?;
                launcher.launch().await
            }
            .into_actor(self)
            .map(|result, act, ctx| {
                let running = result?;
                let answer = (running.pid, running.ports);
                act.adopt(running, ctx);
                Ok(answer)
            }),
        )
    }
}

/// The watcher task saw the child exit.
#[derive(Message)]
#[rtype(result = "()")]
struct ChildExited {
    generation: u64,
    status: String,
}

impl Handler<ChildExited> for NatsProcessActor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.state.mark_down();
        self.pid = None;
        if self.stopping {
            info!(status = %msg.status, "nats-server stopped");
            return;
        }
        let uptime = self
            .up_since
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if uptime >= self.launcher.config.restart.reset_after.duration() {
            self.backoff = self.launcher.config.restart.initial_backoff.duration();
        }
        let hung = self.hang_killed == Some(msg.generation);
        let recent = self.state.count_crash(hung);
        let policy = self.state.crash_policy();
        let looping = recent >= policy.loop_after as usize;
        let window_s = policy.window.as_secs();
        if hung {
            error!(
                uptime_s = uptime.as_secs(),
                recent_crashes = recent,
                hang_restarts = self.state.hang_restarts(),
                "hung nats-server killed; restarting it"
            );
        } else {
            let log = tail_lines(&self.launcher.paths.log_file, 3);
            error!(status = %msg.status, uptime_s = uptime.as_secs(), recent_crashes = recent, last_log = %log, "nats-server exited unexpectedly");
            self.state.set_error(Some(format!(
                "nats-server exited unexpectedly ({})",
                msg.status
            )));
        }
        if looping {
            error!(
                recent_crashes = recent,
                window_s, "nats-server is crash-looping; it is restarted after each crash"
            );
        }
        self.schedule_restart(ctx);
    }
}

/// Stops the child: SIGTERM, wait up to `nats.stop_timeout`, then SIGKILL.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopServer;

impl Handler<StopServer> for NatsProcessActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StopServer, _ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let pid = self.pid;
        let exited = self.exited.clone();
        let timeout = self.launcher.config.stop_timeout.duration();
        let pid_file = self.launcher.paths.pid_file.clone();
        Box::pin(
            async move {
                let (Some(pid), Some(mut exited)) = (pid, exited) else {
                    return;
                };
                let target = Pid::from_raw(pid as i32);
                info!(pid, "stopping nats-server");
                let _ = kill(target, Signal::SIGTERM);
                let graceful = tokio::time::timeout(timeout, exited.wait_for(|done| *done))
                    .await
                    .is_ok();
                if !graceful {
                    warn!(pid, "nats-server did not stop in time; killing it");
                    let _ = kill(target, Signal::SIGKILL);
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), exited.wait_for(|d| *d)).await;
                }
                let _ = std::fs::remove_file(pid_file);
            }
            .into_actor(self)
            .map(|(), act, _ctx| {
                act.state.mark_down();
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_duplicate_name_is_found_in_the_log() {
        let log = "[1] 2026/12/01 09:41:57.35 [INF] 127.0.0.1:55692 - rid:16 - Router connection closed: Duplicate Server Name\n\
                   [1] 2026/12/01 09:41:58.43 [ERR] 127.0.0.1:55708 - rid:18 - Remote server has a duplicate name: \"node-1\"\n";
        assert_eq!(duplicate_name_in(log).as_deref(), Some("node-1"));
        assert_eq!(duplicate_name_in("[INF] Server is ready\n"), None);
        assert_eq!(duplicate_name_in("duplicate name: \"cut"), None);
    }
}
