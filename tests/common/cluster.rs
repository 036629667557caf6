//! A cluster of supervised brokers on loopback: N real `prism-broker` processes, each
//! supervising its own clustered `nats-server`, each with its own temp data dir.
//!
//! ```ignore
//! let mut cluster = ClusterBuilder::new(3).start().await;      // ready, meta leader, streams current
//! let leader = cluster.wait_stream_leader("MARKET_DATA", CLUSTER_DEADLINE).await;
//! let other = cluster.up_nodes().into_iter().find(|&i| i != leader).unwrap();
//! cluster.node(other).post("/api/v1/broker/publish", &body).await;
//! cluster.kill(leader);                                         // kill -9 of its broker
//! cluster.wait_stream_leader("MARKET_DATA", CLUSTER_DEADLINE).await;
//! cluster.restart(leader).await;                                // same data dir, ready
//! cluster.wait_stream_current("MARKET_DATA", CLUSTER_DEADLINE).await;
//! ```
//!
//! **Ports.** Node 0 is the seed: its cluster port comes from [`reserve_cluster_port`]
//! (a JetStream cluster node needs a configured route before it starts, so one route
//! address must be known in advance) and its only route is to itself (nats-server ignores
//! it). Every other port of every node is 0, picked at start and read back from the
//! broker's ports file; the other nodes route to the seed and find each other through
//! gossip. A restarted node routes to the cluster ports of the nodes that are up (and the
//! seed's), and picks its own ports again (0), so no port is ever raced for.
//!
//! **Names.** Node `i` is `node{i}` (`nats.server_name`); the cluster is
//! `prism-test-<pid>-<n>`, distinct per test. Every node gets `nats.cluster.size: N`, so
//! the default streams have 3 replicas in a cluster of three or more.
//!
//! **Waiting.** Every wait reads NATS directly (the monitoring port's `/jsz`, JetStream
//! stream infos through a node's client port), never the broker's own reports, so tests of
//! those reports are not circular; each wait has a deadline and polls every 100 ms.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::TryStreamExt;
use serde_json::{json, Value};

use super::{reserve_cluster_port, ReservedPort, Service, ServiceBuilder};

/// A generous deadline for cluster formation, elections and catch-up on a busy machine.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(90);

/// Bound on one look at a node (a request to its monitoring port or JetStream).
const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

type Configure = Box<dyn Fn(usize, ServiceBuilder) -> ServiceBuilder + Send>;

/// Builds a [`Cluster`] of `size` nodes.
pub struct ClusterBuilder {
    size: usize,
    configure: Vec<Configure>,
}

impl ClusterBuilder {
    pub fn new(size: usize) -> ClusterBuilder {
        assert!(size >= 1);
        ClusterBuilder {
            size,
            configure: Vec::new(),
        }
    }

    /// Applies `f(index, builder)` to every node's builder before its first start (e.g.
    /// streams, routes, a log level); later calls apply after earlier ones.
    pub fn configure(
        mut self,
        f: impl Fn(usize, ServiceBuilder) -> ServiceBuilder + Send + 'static,
    ) -> ClusterBuilder {
        self.configure.push(Box::new(f));
        self
    }

    /// Sets `path` (dotted, as [`ServiceBuilder::set`]) to `value` on every node.
    pub fn set(self, path: &str, value: Value) -> ClusterBuilder {
        let path = path.to_string();
        self.configure(move |_, b| b.set(&path, value.clone()))
    }

    /// Starts every node and waits until each is ready (`/ready` 200), the cluster has a
    /// meta leader and every stream has a leader with all its replicas current.
    pub async fn start(self) -> Cluster {
        let cluster = self.start_listening().await;
        cluster.wait_all_ready(CLUSTER_DEADLINE).await;
        cluster.wait_settled(CLUSTER_DEADLINE).await;
        cluster
    }

    /// Starts every node (at once) and waits only until each listens (its ports file).
    pub async fn start_listening(self) -> Cluster {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "prism-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let seed = reserve_cluster_port();
        let seed_route = route(seed.port);
        let builders: Vec<ServiceBuilder> = (0..self.size)
            .map(|i| {
                let port = if i == 0 { seed.port } else { 0 };
                let mut builder = ServiceBuilder::new()
                    .set("nats.server_name", json!(node_name(i)))
                    .set(
                        "nats.cluster",
                        json!({
                            "name": name,
                            "port": port,
                            "routes": [seed_route],
                            "size": self.size,
                        }),
                    );
                for f in &self.configure {
                    builder = f(i, builder);
                }
                builder
            })
            .collect();
        let nodes = futures::future::join_all(builders.into_iter().map(|b| b.start_listening()))
            .await
            .into_iter()
            .map(Node::Up)
            .collect();
        Cluster { name, seed, nodes }
    }
}

/// `node{i}`: the server name of node `i`.
pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

fn route(port: u16) -> String {
    format!("nats-route://127.0.0.1:{port}")
}

enum Node {
    Up(Service),
    /// Killed or stopped: the builder keeps its data dir and config for a restart.
    Down(ServiceBuilder),
    /// Only while a node changes state.
    Gone,
}

/// A running cluster; every node is stopped (SIGTERM) when it is dropped.
pub struct Cluster {
    /// The cluster's name (`nats.cluster.name`).
    pub name: String,
    seed: ReservedPort,
    nodes: Vec<Node>,
}

impl Cluster {
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_up(&self, i: usize) -> bool {
        matches!(self.nodes[i], Node::Up(_))
    }

    /// The indices of the nodes that run.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.size()).filter(|&i| self.is_up(i)).collect()
    }

    /// The broker of node `i`; panics when it is down.
    pub fn node(&self, i: usize) -> &Service {
        match &self.nodes[i] {
            Node::Up(service) => service,
            _ => panic!("{} is down", node_name(i)),
        }
    }

    /// The index of the node whose server name is `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.size()).find(|&i| node_name(i) == name)
    }

    /// The log of node `i`'s broker (up or down).
    pub fn log(&self, i: usize) -> String {
        match &self.nodes[i] {
            Node::Up(service) => service.log(),
            Node::Down(builder) => builder.log(),
            Node::Gone => String::new(),
        }
    }

    /// The seed's (node 0's) reserved cluster port, the same across its restarts.
    pub fn seed_port(&self) -> u16 {
        self.seed.port
    }

    /// The cluster (route) port node `i` listens on; panics when it is down.
    pub fn cluster_port(&self, i: usize) -> u16 {
        self.node(i)
            .nats_cluster_port()
            .expect("a clustered node reports its cluster port")
    }

    /// Routes for (re)starting node `i`: the cluster ports of the other nodes that are up,
    /// and the seed's.
    pub fn routes_for(&self, i: usize) -> Vec<String> {
        let mut routes: Vec<String> = self
            .up_nodes()
            .into_iter()
            .filter(|&j| j != i)
            .map(|j| route(self.cluster_port(j)))
            .collect();
        let seed = route(self.seed.port);
        if !routes.contains(&seed) {
            routes.push(seed);
        }
        routes
    }

    /// `kill -9` of node `i`'s broker (its nats-server dies with it); returns once both
    /// are gone.
    pub fn kill(&mut self, i: usize) {
        match std::mem::replace(&mut self.nodes[i], Node::Gone) {
            Node::Up(service) => self.nodes[i] = Node::Down(service.kill9()),
            other => {
                self.nodes[i] = other;
                panic!("{} is not running", node_name(i));
            }
        }
    }

    /// Graceful stop of node `i` (SIGTERM); asserts it exits 0 within 15 s.
    pub fn stop(&mut self, i: usize) {
        match std::mem::replace(&mut self.nodes[i], Node::Gone) {
            Node::Up(service) => {
                let (status, builder) = service.stop(Duration::from_secs(15));
                let log = builder.log();
                self.nodes[i] = Node::Down(builder);
                let status = status.unwrap_or_else(|| {
                    panic!("{} did not stop within 15 s; log:\n{log}", node_name(i))
                });
                assert!(
                    status.success(),
                    "{} exited {status}; log:\n{log}",
                    node_name(i)
                );
            }
            other => {
                self.nodes[i] = other;
                panic!("{} is not running", node_name(i));
            }
        }
    }

    /// Starts node `i` again with its data dir and config, routes to the nodes that are up
    /// ([`Cluster::routes_for`]), and waits until it is ready.
    pub async fn restart(&mut self, i: usize) {
        self.restart_listening(i).await;
        self.node(i).wait_ready(CLUSTER_DEADLINE).await;
    }

    /// [`Cluster::restart`] without waiting for readiness (e.g. when the cluster has no
    /// quorum yet).
    pub async fn restart_listening(&mut self, i: usize) {
        let routes = self.routes_for(i);
        let builder = match std::mem::replace(&mut self.nodes[i], Node::Gone) {
            Node::Down(builder) => builder,
            other => {
                self.nodes[i] = other;
                panic!("{} is running", node_name(i));
            }
        };
        let port = if i == 0 { self.seed.port } else { 0 };
        let builder = builder
            .set("nats.cluster.routes", json!(routes))
            .set("nats.cluster.port", json!(port));
        self.nodes[i] = Node::Up(builder.start_listening().await);
    }

    /// Waits until every node that is up answers `/ready` 200; on the deadline panics with
    /// what each node and JetStream say ([`Cluster::describe`]).
    pub async fn wait_all_ready(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        for i in self.up_nodes() {
            while self.node(i).ready_status().await != Some(200) {
                if Instant::now() >= end {
                    panic!(
                        "{} not ready within {deadline:?}\n{}\nits log:\n{}",
                        node_name(i),
                        self.describe().await,
                        self.log(i)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Polls `check` every 100 ms until it returns `Some` or `deadline` passes; then panics
    /// with `what` and [`Cluster::describe`].
    pub async fn wait_for<T, F, Fut>(&self, what: &str, deadline: Duration, mut check: F) -> T
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
                panic!(
                    "timed out after {deadline:?} waiting for {what}\n{}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What every node says (`/ready`, its meta leader) and every stream's info as
    /// JetStream answers it: for failure messages.
    pub async fn describe(&self) -> String {
        let mut out = String::new();
        for i in 0..self.size() {
            if !self.is_up(i) {
                out.push_str(&format!("{}: down\n", node_name(i)));
                continue;
            }
            let (status, ready) = self.node(i).get("/ready").await;
            let meta = self.jsz(i).await.map(|j| j["meta_cluster"].clone());
            out.push_str(&format!(
                "{}: /ready {status} {}; meta {}\n",
                node_name(i),
                ready["data"]["components"],
                meta.unwrap_or(Value::Null)
            ));
        }
        if let Some(i) = self.up_nodes().first().copied() {
            let js = self.jetstream(i).await;
            let names = tokio::time::timeout(LOOK_TIMEOUT, async {
                js.stream_names().try_collect::<Vec<String>>().await
            })
            .await;
            out.push_str(&format!("streams listed via {}: {names:?}\n", node_name(i)));
            for name in [
                "MARKET_DATA",
                "SYSTEM_EVENTS",
                "SERVICE_LOGS",
                "DEAD_LETTERS",
            ] {
                let info = self.stream_info(name).await;
                out.push_str(&format!(
                    "{name}: {:?}\n",
                    info.map(|i| (i.config.num_replicas, i.cluster))
                ));
            }
        }
        out
    }

    /// `/jsz` of node `i`'s nats-server, or `None` when it does not answer in time.
    pub async fn jsz(&self, i: usize) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/jsz", self.node(i).nats_http_port());
        let r = self
            .node(i)
            .http
            .get(url)
            .timeout(LOOK_TIMEOUT)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The meta leader as node `i` sees it.
    pub async fn meta_leader_seen_by(&self, i: usize) -> Option<String> {
        let jsz = self.jsz(i).await?;
        jsz["meta_cluster"]["leader"]
            .as_str()
            .filter(|l| !l.is_empty())
            .map(String::from)
    }

    /// Waits until every node that is up sees the same meta leader, itself a node that is
    /// up; returns its index.
    pub async fn wait_meta_leader(&self, deadline: Duration) -> usize {
        self.wait_for("one meta leader seen by every node", deadline, || async {
            let mut leader = None;
            for i in self.up_nodes() {
                let seen = self.meta_leader_seen_by(i).await?;
                if leader.get_or_insert_with(|| seen.clone()) != &seen {
                    return None;
                }
            }
            let index = self.index_of(&leader?)?;
            self.is_up(index).then_some(index)
        })
        .await
    }

    /// A JetStream context on node `i`'s nats-server.
    pub async fn jetstream(&self, i: usize) -> jetstream::Context {
        let client = self.node(i).nats_client().await;
        let mut context = jetstream::new(client);
        context.set_timeout(LOOK_TIMEOUT);
        context
    }

    /// `stream`'s info as answered through the first node that is up (by its leader).
    pub async fn stream_info(&self, stream: &str) -> Option<jetstream::stream::Info> {
        for i in self.up_nodes() {
            let js = self.jetstream(i).await;
            let found = tokio::time::timeout(LOOK_TIMEOUT, async {
                js.get_stream(stream).await.ok()?.info().await.ok().cloned()
            })
            .await;
            if let Ok(Some(info)) = found {
                return Some(info);
            }
        }
        None
    }

    /// The index of `stream`'s leader, when it has one that is up.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let info = self.stream_info(stream).await?;
        let leader = info.cluster?.leader?;
        self.index_of(&leader).filter(|&i| self.is_up(i))
    }

    /// Waits until `stream` has a leader that is up; returns its index.
    pub async fn wait_stream_leader(&self, stream: &str, deadline: Duration) -> usize {
        self.wait_for(&format!("a leader of {stream}"), deadline, || {
            self.stream_leader(stream)
        })
        .await
    }

    /// Waits until `stream` has a leader that is up and all its replicas are placed,
    /// current, online and without lag (every replica caught up); returns the leader.
    pub async fn wait_stream_current(&self, stream: &str, deadline: Duration) -> usize {
        self.wait_for(
            &format!("{stream} with a leader and every replica current"),
            deadline,
            || async {
                let info = self.stream_info(stream).await?;
                let replicas = info.config.num_replicas.max(1);
                let cluster = info.cluster?;
                let leader = self.index_of(cluster.leader.as_deref()?)?;
                let current = cluster.replicas.iter().all(|p| {
                    p.current
                        && !p.offline
                        && p.lag.unwrap_or(0) == 0
                        && self.index_of(&p.name).is_some_and(|i| self.is_up(i))
                });
                (self.is_up(leader) && current && cluster.replicas.len() + 1 == replicas)
                    .then_some(leader)
            },
        )
        .await
    }

    /// Waits for a meta leader and, for every stream the cluster has, a leader with every
    /// replica current.
    pub async fn wait_settled(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        self.wait_meta_leader(deadline).await;
        let names: Vec<String> = self
            .wait_for("the stream listing", deadline, || async {
                let i = *self.up_nodes().first()?;
                let js = self.jetstream(i).await;
                tokio::time::timeout(LOOK_TIMEOUT, async {
                    js.stream_names().try_collect::<Vec<String>>().await.ok()
                })
                .await
                .ok()
                .flatten()
            })
            .await;
        for name in names {
            let left = end.saturating_duration_since(Instant::now());
            self.wait_stream_current(&name, left.max(Duration::from_secs(1)))
                .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every node is asked to stop at once; each `Service` then waits for its own exit.
        for node in &self.nodes {
            if let Node::Up(service) = node {
                service.signal(nix::sys::signal::Signal::SIGTERM);
            }
        }
    }
}
