//! `config/broker.yaml`: the raw serde types (every struct rejects unknown fields), the
//! default JetStream streams, environment overrides and validation.
//!
//! Loading is two-stage: the YAML is parsed into a tree, every problem in it is collected
//! (unknown fields, wrong types, bad units, then semantic checks) and only a config with no
//! problem at all is returned. Talks to nothing but the file system (reading the file).

mod collect;
pub mod collectors;
pub mod consumers;
mod env;
mod streams;
pub mod units;
mod validate;
pub use validate::replicas_problem;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use collect::deserialize_all;
pub use collectors::CollectorsConfig;
pub use consumers::{AckMode, ConsumerConfig, DeliverFrom, DurableSpec};
pub use env::ENV_VARS;
pub use env::{apply_env_overrides, EnvSource};
pub use streams::{
    default_streams, validate_stream_name, Discard, Retention, StorageKind, StreamConfig,
    StreamSpec, DEAD_LETTERS, MARKET_DATA_SUBJECTS,
};
pub use units::{ByteSize, Span};

/// The whole `broker.yaml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub service: ServiceConfig,
    pub nats: NatsConfig,
    /// Streams merged over the defaults (`MARKET_DATA`, `SYSTEM_EVENTS`, `SERVICE_LOGS`,
    /// `DEAD_LETTERS`).
    pub streams: BTreeMap<String, StreamConfig>,
    pub router: RouterConfig,
    /// Durable consumers kept for downstream services, by durable name.
    pub consumers: BTreeMap<String, ConsumerConfig>,
    /// Heartbeats of the data collectors.
    pub collectors: CollectorsConfig,
}

/// The REST API and process-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address the REST API binds (`API_HOST`).
    pub host: String,
    /// Port of the REST API (`API_PORT`); 0 lets the OS pick a free one (see `ports_file`).
    pub port: u16,
    /// When set, the broker writes the addresses it really listens on (API, NATS client,
    /// monitoring and cluster ports) to this JSON file once everything listens, and removes
    /// it at shutdown; the way for scripts and tests to learn ports picked for a `0`.
    pub ports_file: Option<PathBuf>,
    /// Free-form environment name reported by `/api/v1/status` (`ENVIRONMENT`).
    pub environment: String,
    /// When set, mutating endpoints need `Authorization: Bearer <token>` (`PRISM_API_TOKEN`).
    pub api_token: Option<String>,
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing filter (`LOG_LEVEL`).
    pub log_level: String,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// Largest accepted request body; larger ones get 413 `PAYLOAD_TOO_LARGE`.
    pub max_request_size: ByteSize,
    /// Upper bound on any NATS request made on behalf of an API call, so nothing hangs.
    pub request_timeout: Span,
    /// How long shutdown waits for in-flight HTTP requests.
    pub shutdown_timeout: Span,
    /// actix-web worker threads; 0 means one per core.
    pub workers: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            host: "127.0.0.1".into(),
            port: 8086,
            ports_file: None,
            environment: "development".into(),
            api_token: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            max_request_size: ByteSize(1 << 20),
            request_timeout: Span::secs(5),
            shutdown_timeout: Span::secs(3),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The NATS server: supervised child (`auto_start: true`) or external server / cluster.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// true: start and supervise our own `nats-server`; false: connect to `url`.
    pub auto_start: bool,
    /// The server binary: a path, or a name looked up on PATH.
    pub binary: String,
    /// External server URL(s) (`NATS_URL`); a list for a cluster. Ignored with `auto_start`,
    /// where the client connects to `host:port` of the child.
    pub url: UrlList,
    /// Address the child listens on (client, monitoring and cluster ports).
    pub host: String,
    /// Client port of the child; 0 lets nats-server pick one at the first start, which is
    /// then kept for every restart of the child.
    pub port: u16,
    /// Monitoring port of the child (`/healthz`, `/varz`, `/jsz`); 0 picks one as for `port`.
    pub http_port: u16,
    /// JetStream store, generated server config, pid file and server log.
    pub data_dir: PathBuf,
    /// Name the child reports; default `prism-nats-<port>` (`prism-nats` with port 0).
    pub server_name: Option<String>,
    pub jetstream: JetStreamLimits,
    pub limits: ServerLimits,
    pub cluster: ClusterConfig,
    /// Client accounts written into the child's config; the broker adds its own user.
    pub users: Vec<UserConfig>,
    pub tls: Option<TlsConfig>,
    /// Backoff between restarts of a child that died, and when restarts count as a crash loop.
    pub restart: RestartConfig,
    /// A child whose JetStream (probed on `/jsz` every second) has not answered for this long
    /// is killed and restarted (a hang restart); 0 only reports it.
    pub hang_timeout: Span,
    /// How long to wait for `/healthz` after starting the child.
    pub ready_timeout: Span,
    /// How long to wait for the child to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Span,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            auto_start: true,
            binary: "nats-server".into(),
            url: UrlList::One("nats://127.0.0.1:4222".into()),
            host: "127.0.0.1".into(),
            port: 4222,
            http_port: 8222,
            data_dir: PathBuf::from("data/nats"),
            server_name: None,
            jetstream: JetStreamLimits::default(),
            limits: ServerLimits::default(),
            cluster: ClusterConfig::default(),
            users: Vec::new(),
            tls: None,
            restart: RestartConfig::default(),
            hang_timeout: Span::secs(10),
            ready_timeout: Span::secs(10),
            stop_timeout: Span::secs(5),
        }
    }
}

impl NatsConfig {
    /// The supervised server's address as it goes into a local URL: a wildcard listen
    /// address is reached on loopback, IPv6 in brackets.
    pub fn local_url_host(&self) -> String {
        match self.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_string(),
            "::" => "[::1]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        }
    }

    /// The supervised server's monitoring endpoint `path` (e.g. `/varz`).
    pub fn monitor_url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.local_url_host(), self.http_port)
    }

    /// True when the broker supervises a clustered server (`auto_start` with
    /// `nats.cluster.name`).
    pub fn clustered(&self) -> bool {
        self.auto_start && self.cluster.name.is_some()
    }

    /// The number of nodes of the supervised server's cluster: 1 when not clustered,
    /// `nats.cluster.size` when given, else 1 + the distinct routes that do not lead back to
    /// this node. `None` in external mode (the broker cannot know).
    pub fn cluster_size(&self) -> Option<usize> {
        if !self.auto_start {
            return None;
        }
        if !self.clustered() {
            return Some(1);
        }
        if let Some(size) = self.cluster.size {
            return Some(size);
        }
        let mut peers: Vec<(String, u16)> = Vec::new();
        for route in &self.cluster.routes {
            let Ok(parsed) = RouteUrl::parse(route) else {
                continue;
            };
            let key = (parsed.host.to_ascii_lowercase(), parsed.port);
            if !self.is_self_route(&key.0, key.1) && !peers.contains(&key) {
                peers.push(key);
            }
        }
        Some(1 + peers.len())
    }

    /// A route to `host:port` leads back to this node: its cluster port on a local or own
    /// address, or its advertised address.
    fn is_self_route(&self, host: &str, port: u16) -> bool {
        if let Some((adv_host, adv_port)) =
            self.cluster.advertise.as_deref().and_then(split_host_port)
        {
            if adv_host.eq_ignore_ascii_case(host) && adv_port == port {
                return true;
            }
        }
        let own = self.host.to_ascii_lowercase();
        port != 0
            && port == self.cluster.port
            && (host == own || matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]"))
    }

    /// Replicas of the default streams: 3 in a supervised cluster of three or more nodes,
    /// else 1.
    pub fn default_replicas(&self) -> usize {
        match self.cluster_size() {
            Some(size) if self.clustered() && size >= 3 => 3,
            _ => 1,
        }
    }

    /// The URLs the broker's own client connects to.
    pub fn client_urls(&self) -> Vec<String> {
        if self.auto_start {
            let scheme = if self.tls.is_some() { "tls" } else { "nats" };
            vec![format!(
                "{scheme}://{}:{}",
                self.local_url_host(),
                self.port
            )]
        } else {
            self.url.to_vec()
        }
    }
}

/// One URL or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum UrlList {
    One(String),
    Many(Vec<String>),
}

impl UrlList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            UrlList::One(url) => url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect(),
            UrlList::Many(urls) => urls.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JetStreamLimits {
    pub max_memory: ByteSize,
    pub max_storage: ByteSize,
}

impl Default for JetStreamLimits {
    fn default() -> Self {
        JetStreamLimits {
            max_memory: ByteSize(1 << 30),
            max_storage: ByteSize(10 << 30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    pub max_payload: ByteSize,
    pub max_connections: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_payload: ByteSize(1 << 20),
            max_connections: 1000,
        }
    }
}

/// Set `name` and `routes` to join a cluster (with `nats.server_name` set, unique per node).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name, the same on every node.
    pub name: Option<String>,
    /// Route listen port; 0 picks one at the first start (kept for restarts).
    pub port: u16,
    /// Routes to the other nodes, e.g. `nats-route://node2:6222` (a route to this node itself
    /// is allowed and ignored by nats-server). A JetStream cluster node needs at least one.
    pub routes: Vec<String>,
    /// `host:port` the other nodes reach this node's route port at, when it differs from
    /// the listen address (NAT, containers); rendered as nats-server's `cluster.advertise`.
    pub advertise: Option<String>,
    /// Credentials every route must present; also added to `routes` that carry none.
    /// Required when `nats.users` is set.
    pub authorization: Option<RouteAuthorization>,
    /// Number of nodes in the cluster; default 1 + the distinct routes that do not lead back
    /// to this node. Bounds stream `replicas`.
    pub size: Option<usize>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: None,
            port: 6222,
            routes: Vec::new(),
            advertise: None,
            authorization: None,
            size: None,
        }
    }
}

/// `nats.cluster.authorization`: the user and password of route connections.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteAuthorization {
    pub user: String,
    pub password: String,
}

/// A parsed `nats-route://[user:password@]host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUrl {
    /// `user:password` when the URL carries credentials.
    pub userinfo: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl RouteUrl {
    /// Parses a route URL; the error says what is wrong.
    pub fn parse(url: &str) -> Result<RouteUrl, String> {
        let rest = url
            .strip_prefix("nats-route://")
            .ok_or_else(|| format!("{url:?}: must start with nats-route://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!("{url:?}: expected nats-route://host:port, no path"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) if !userinfo.is_empty() => {
                (Some(userinfo.to_string()), hostport)
            }
            Some(_) => return Err(format!("{url:?}: empty credentials before @")),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("{url:?}: expected nats-route://host:port with a port"))?;
        if port == 0 {
            return Err(format!("{url:?}: port must be between 1 and 65535"));
        }
        Ok(RouteUrl {
            userinfo,
            host,
            port,
        })
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6); `None` without a valid port or host.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub user: String,
    pub password: String,
    pub permissions: Option<Permissions>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Require and verify client certificates.
    pub verify: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartConfig {
    pub initial_backoff: Span,
    /// The cap of the doubling backoff: a few seconds, so the service publishes again
    /// within 5 s of any single crash, even in a crash loop.
    pub max_backoff: Span,
    /// A child that stayed up this long resets the backoff to `initial_backoff`.
    pub reset_after: Span,
    /// Crashes (unexpected exits and hang restarts) within this window are the recent
    /// ones, reported in health and metrics.
    pub crash_window: Span,
    /// This many recent crashes make the child count as crash-looping.
    pub crash_loop_after: u32,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial_backoff: Span::millis(250),
            max_backoff: Span::secs(2),
            reset_after: Span::secs(60),
            crash_window: Span::secs(300),
            crash_loop_after: 3,
        }
    }
}

/// The router: where rules live and how it consumes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    pub routes_dir: PathBuf,
    pub transforms_dir: PathBuf,
    /// Reload on file change; SIGHUP and `POST /api/v1/routes/reload` always work.
    pub watch: bool,
    pub dead_letter_prefix: String,
    /// Queue group of core-NATS sources unless a route names its own.
    pub queue_group: String,
    /// Defaults for JetStream-sourced routes' durable consumers.
    pub consumer: ConsumerDefaults,
    /// Threads of the router's runtime. 1 (the default) keeps every message on one thread
    /// with its connection (lowest latency); more lets `partition_by` workers and routes run
    /// on several cores.
    pub threads: usize,
    /// Ordered workers of a route with `partition_by`.
    pub partition_workers: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            routes_dir: PathBuf::from("routes.d"),
            transforms_dir: PathBuf::from("transforms"),
            watch: true,
            dead_letter_prefix: "deadletter".into(),
            queue_group: "prism-router".into(),
            consumer: ConsumerDefaults::default(),
            threads: 1,
            partition_workers: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerDefaults {
    pub ack_wait: Span,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
}

impl Default for ConsumerDefaults {
    fn default() -> Self {
        ConsumerDefaults {
            ack_wait: Span::secs(30),
            max_ack_pending: 10_000,
            max_deliver: 5,
        }
    }
}

impl BrokerConfig {
    /// The streams the service ensures: the defaults (and `DEAD_LETTERS` for
    /// `router.dead_letter_prefix`) with `streams:` merged over them. The defaults get
    /// [`NatsConfig::default_replicas`] unless their entry sets `replicas`.
    pub fn effective_streams(&self) -> Vec<StreamSpec> {
        streams::merge(
            &self.streams,
            &self.router.dead_letter_prefix,
            self.nats.default_replicas(),
        )
    }

    /// The durable consumers the service ensures after the streams (`consumers:`).
    pub fn durable_consumers(&self) -> Vec<DurableSpec> {
        consumers::resolve(&self.consumers)
    }
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted field path, e.g. `nats.jetstream.max_memory`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why a config could not be loaded; `Display` prints one `file: field: problem` line each.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{}", format_problems(.file, .problems))]
    Invalid {
        file: String,
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn format_problems(file: &str, problems: &[ConfigProblem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if p.path.is_empty() {
            out.push_str(&format!("{file}: {}", p.message));
        } else {
            out.push_str(&format!("{file}: {}: {}", p.path, p.message));
        }
    }
    out
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The config path used when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/broker.yaml";

/// Reads, parses, overrides from the process environment and validates `path`; what
/// `serve`, `check` and `test` all do. A missing file at [`DEFAULT_PATH`] is not an error:
/// the defaults apply (still with the environment's overrides, and validated).
pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
    load_with_env(path, &EnvSource::process())
}

/// [`load`] with an explicit environment (tests).
pub fn load_with_env(path: &Path, env: &EnvSource) -> Result<BrokerConfig, ConfigError> {
    load_from(path, Path::new(DEFAULT_PATH), env)
}

/// [`load`] where a missing `default` means the defaults.
fn load_from(path: &Path, default: &Path, env: &EnvSource) -> Result<BrokerConfig, ConfigError> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == default => String::new(),
        Err(source) => return Err(ConfigError::Read { file, source }),
    };
    parse(&text, &file, env)
}

/// Parses YAML text into a validated config, collecting every problem.
pub fn parse(text: &str, file: &str, env: &EnvSource) -> Result<BrokerConfig, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_string(),
        problems,
    };
    let tree: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| invalid(vec![ConfigProblem::new("", format!("invalid yaml: {e}"))]))?
    };
    let tree = match tree {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other,
    };
    let mut config: BrokerConfig = collect::deserialize_all(&tree).map_err(invalid)?;
    let mut problems = apply_env_overrides(&mut config, env);
    problems.extend(validate::validate(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

#[cfg(test)]
mod tests;
