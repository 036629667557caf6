//! The cluster section of the status snapshot: the NATS cluster as this node sees it. Pure
//! functions over what the monitoring port and JetStream answered, no I/O:
//!
//! - the node: the cluster's name and this node's server name (`/varz`, or the connected
//!   server's INFO in external mode), the JetStream meta group's leader and size (`/jsz`
//!   `meta_cluster`; nats-server lists the meta group's peers with current/active only on
//!   the meta leader), and the peers it has a route to (`/routez`: nats-server 2.9 names
//!   them by server id and address, not by name);
//! - per stream, from the stream infos of the listing (answered by each stream's leader):
//!   the leader and every replica with current, offline, lag and last activity, and what
//!   that means — healthy, degraded (a replica is not current but the stream has a quorum)
//!   or unhealthy (no leader, or no quorum).
//!
//! [`ClusterView::assess`] turns it into the `cluster` check of `/api/v1/broker/health`.

use std::collections::BTreeSet;

use async_nats::jetstream::stream;
use serde::Serialize;
use serde_json::Value;

/// At most this many streams and routes are listed in the section.
pub const MAX_CLUSTER_ENTRIES: usize = 256;

/// How a stream or the cluster is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One replica of a stream or one peer of the meta group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub name: String,
    pub leader: bool,
    /// Up to date with the leader (the leader always is).
    pub current: bool,
    /// The group considers the node offline.
    pub offline: bool,
    /// Operations behind the leader.
    pub lag: u64,
    /// Milliseconds since the leader last heard from it (`None` for the leader itself).
    pub active_ms: Option<u64>,
}

impl Replica {
    fn up(&self) -> bool {
        self.current && !self.offline
    }
}

/// A stream's replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamCluster {
    pub name: String,
    /// Configured replicas (`num_replicas`).
    pub replicas: usize,
    pub leader: Option<String>,
    /// The leader first, then the other replicas by name.
    pub peers: Vec<Replica>,
    /// Replicas up to date (the leader included).
    pub replicas_current: usize,
    /// The largest lag of a replica, in operations.
    pub max_lag: u64,
    /// More than half of the replicas are current.
    pub quorum: bool,
    pub status: Level,
    /// Why the status is not healthy.
    pub reason: Option<String>,
}

/// A route to another node, as `/routez` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutePeer {
    pub server_id: String,
    /// `ip:port` of the route connection.
    pub address: String,
    /// The route is one of this node's configured `routes` (not learned from gossip).
    pub configured: bool,
    pub rtt: Option<String>,
    pub uptime: Option<String>,
}

/// The `cluster` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The cluster's name; `None` when the server is not clustered.
    pub name: Option<String>,
    /// This node's server name.
    pub this_node: Option<String>,
    /// Nodes of the JetStream meta group, as nats-server counts them.
    pub size: Option<u64>,
    /// The JetStream meta leader; `None` while there is none (an election, or no quorum).
    pub meta_leader: Option<String>,
    /// The meta group's other peers with current/active: nats-server reports them only on
    /// the meta leader, so this is empty on the other nodes.
    pub meta_peers: Vec<Replica>,
    /// Distinct servers this node has a route to.
    pub peers_seen: usize,
    pub peers: Vec<RoutePeer>,
    /// Streams by name (those the listing answered; a stream without a leader may be missing).
    pub streams: Vec<StreamCluster>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn nanos_to_ms(value: Option<&Value>) -> Option<u64> {
    value.and_then(Value::as_u64).map(|n| n / 1_000_000)
}

impl ClusterView {
    /// The node part from the monitoring answers of a supervised server: `/varz` (cluster
    /// name, server name), `/jsz` (meta group), `/routez` (routes).
    pub fn from_monitoring(
        varz: Option<&Value>,
        jsz: Option<&Value>,
        routez: Option<&Value>,
    ) -> ClusterView {
        let meta = jsz.and_then(|j| j.get("meta_cluster"));
        let name = varz
            .and_then(|v| v.get("cluster"))
            .and_then(|c| text(c, "name"))
            .or_else(|| meta.and_then(|m| text(m, "name")));
        let mut view = ClusterView {
            name,
            this_node: varz.and_then(|v| text(v, "server_name")),
            size: meta
                .and_then(|m| m.get("cluster_size"))
                .and_then(Value::as_u64),
            meta_leader: meta.and_then(|m| text(m, "leader")),
            ..Default::default()
        };
        if let Some(replicas) = meta
            .and_then(|m| m.get("replicas"))
            .and_then(Value::as_array)
        {
            view.meta_peers = replicas
                .iter()
                .take(MAX_CLUSTER_ENTRIES)
                .map(|r| Replica {
                    name: text(r, "name").unwrap_or_default(),
                    leader: false,
                    current: r.get("current").and_then(Value::as_bool).unwrap_or(false),
                    offline: r.get("offline").and_then(Value::as_bool).unwrap_or(false),
                    lag: r.get("lag").and_then(Value::as_u64).unwrap_or(0),
                    active_ms: nanos_to_ms(r.get("active")),
                })
                .collect();
        }
        if let Some(routes) = routez
            .and_then(|r| r.get("routes"))
            .and_then(Value::as_array)
        {
            let mut ids = BTreeSet::new();
            for route in routes {
                let Some(id) = text(route, "remote_id") else {
                    continue;
                };
                // A route can be doubled for a moment while two nodes connect both ways.
                if !ids.insert(id.clone()) || view.peers.len() >= MAX_CLUSTER_ENTRIES {
                    continue;
                }
                view.peers.push(RoutePeer {
                    server_id: id,
                    address: format!(
                        "{}:{}",
                        text(route, "ip").unwrap_or_default(),
                        route.get("port").and_then(Value::as_u64).unwrap_or(0)
                    ),
                    configured: route
                        .get("is_configured")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    rtt: text(route, "rtt"),
                    uptime: text(route, "uptime"),
                });
            }
            view.peers_seen = ids.len();
        }
        view
    }

    /// The node part in external mode: what the connected server's INFO says.
    pub fn from_server_info(info: &async_nats::ServerInfo) -> ClusterView {
        ClusterView {
            name: info.cluster.clone().filter(|c| !c.is_empty()),
            this_node: Some(info.server_name.clone()).filter(|n| !n.is_empty()),
            ..Default::default()
        }
    }

    /// This view with the replication of `infos` (sorted by name).
    pub fn with_streams(mut self, infos: &[stream::Info]) -> ClusterView {
        self.streams = infos
            .iter()
            .take(MAX_CLUSTER_ENTRIES)
            .map(stream_cluster)
            .collect();
        self.streams.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    pub fn clustered(&self) -> bool {
        self.name.is_some()
    }

    pub fn stream(&self, name: &str) -> Option<&StreamCluster> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The cluster check: unhealthy without a meta leader, with a stream that has no leader
    /// or no quorum, a `configured` stream the listing did not answer for, or a duplicate
    /// server name; degraded when a replica or meta peer is not current or fewer peers are
    /// seen than the cluster has; with every reason.
    pub fn assess(
        &self,
        configured: &[&str],
        duplicate_name: Option<&str>,
    ) -> (Level, Vec<String>) {
        let mut level = Level::Healthy;
        let mut reasons = Vec::new();
        let mut note = |l: Level, reason: String| {
            level = level.max(l);
            reasons.push(reason);
        };
        if let Some(name) = duplicate_name {
            note(
                Level::Unhealthy,
                format!("a peer has the same server name {name:?}: routes to it are refused"),
            );
        }
        if self.clustered() && self.meta_leader.is_none() {
            note(
                Level::Unhealthy,
                "no jetstream meta leader (an election, or too few nodes for a quorum)".into(),
            );
        }
        for stream in &self.streams {
            if let (Some(level), Some(reason)) = (
                (stream.status != Level::Healthy).then_some(stream.status),
                &stream.reason,
            ) {
                note(level, format!("stream {}: {reason}", stream.name));
            }
        }
        if self.clustered() {
            for name in configured {
                if self.stream(name).is_none() {
                    note(
                        Level::Unhealthy,
                        format!("stream {name}: not in the listing (no leader answered for it, or it does not exist)"),
                    );
                }
            }
            for peer in self.meta_peers.iter().filter(|p| !p.up()) {
                note(
                    Level::Degraded,
                    format!("meta group peer {} is not current", peer.name),
                );
            }
            if let Some(size) = self.size {
                let expected = usize::try_from(size.saturating_sub(1)).unwrap_or(usize::MAX);
                if self.peers_seen < expected {
                    note(
                        Level::Degraded,
                        format!(
                            "routes to {} of the {expected} other nodes",
                            self.peers_seen
                        ),
                    );
                }
            }
        }
        (level, reasons)
    }
}

/// A stream's replication from its info.
fn stream_cluster(info: &stream::Info) -> StreamCluster {
    let replicas = info.config.num_replicas.max(1);
    let cluster = info.cluster.as_ref();
    let leader = cluster
        .and_then(|c| c.leader.clone())
        .filter(|l| !l.is_empty());
    let mut peers = Vec::new();
    if let Some(leader) = &leader {
        peers.push(Replica {
            name: leader.clone(),
            leader: true,
            current: true,
            offline: false,
            lag: 0,
            active_ms: None,
        });
    }
    let mut followers: Vec<Replica> = cluster
        .map(|c| {
            c.replicas
                .iter()
                .map(|p| Replica {
                    name: p.name.clone(),
                    leader: false,
                    current: p.current,
                    offline: p.offline,
                    lag: p.lag.unwrap_or(0),
                    active_ms: Some(p.active.as_millis().min(u128::from(u64::MAX)) as u64),
                })
                .collect()
        })
        .unwrap_or_default();
    followers.sort_by(|a, b| a.name.cmp(&b.name));
    peers.extend(followers);
    let replicas_current = peers.iter().filter(|p| p.up()).count();
    let max_lag = peers.iter().map(|p| p.lag).max().unwrap_or(0);
    let quorum = leader.is_some() && replicas_current > replicas / 2;
    let behind: Vec<String> = peers
        .iter()
        .filter(|p| !p.up())
        .map(|p| {
            let mut what = p.name.clone();
            if p.offline {
                what.push_str(" (offline)");
            } else if p.lag > 0 {
                what.push_str(&format!(" (lag {})", p.lag));
            }
            what
        })
        .collect();
    let (status, reason) = if leader.is_none() {
        (Level::Unhealthy, Some("no leader".to_string()))
    } else if !quorum {
        (
            Level::Unhealthy,
            Some(format!(
                "no quorum: {replicas_current} of {replicas} replicas current"
            )),
        )
    } else if replicas_current < replicas {
        let missing = replicas.saturating_sub(peers.len());
        let mut reason = format!("{replicas_current} of {replicas} replicas current");
        if !behind.is_empty() {
            reason.push_str(&format!("; not current: {}", behind.join(", ")));
        }
        if missing > 0 {
            reason.push_str(&format!("; {missing} not placed"));
        }
        (Level::Degraded, Some(reason))
    } else {
        (Level::Healthy, None)
    };
    StreamCluster {
        name: info.config.name.clone(),
        replicas,
        leader,
        peers,
        replicas_current,
        max_lag,
        quorum,
        status,
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// A stream info as nats-server 2.9 answers it (`cluster` as seen on a live cluster).
    fn info(name: &str, replicas: usize, cluster: Value) -> stream::Info {
        serde_json::from_value(json!({
            "config": { "name": name, "subjects": [format!("{name}.>")], "num_replicas": replicas,
                        "retention": "limits", "storage": "file", "discard": "old",
                        "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
                        "max_msg_size": -1, "duplicate_window": 120_000_000_000u64 },
            "created": "2026-12-01T09:40:55.259687281Z",
            "state": { "messages": 0, "bytes": 0, "first_seq": 0, "first_ts": "0001-01-01T00:00:00Z",
                       "last_seq": 0, "last_ts": "0001-01-01T00:00:00Z", "consumer_count": 0 },
            "cluster": cluster,
        }))
        .unwrap()
    }

    fn peer(name: &str, current: bool, lag: Option<u64>) -> Value {
        let mut p =
            json!({ "name": name, "current": current, "active": 1_722_887u64, "peer": "44jzkV9D" });
        if let Some(lag) = lag {
            p["lag"] = json!(lag);
        }
        p
    }

    #[test]
    fn the_node_part_comes_from_varz_jsz_and_routez() {
        // As nats-server 2.9.10 answers on the meta leader of a live loopback cluster.
        let varz =
            json!({ "server_name": "n1", "cluster": { "name": "cx", "cluster_port": 19621 } });
        let jsz = json!({ "meta_cluster": { "name": "cx", "leader": "n1", "peer": "fjFyEjc1",
            "replicas": [ { "name": "n2", "current": true, "active": 854_443_429u64, "peer": "44jzkV9D" },
                          { "name": "n3", "current": false, "active": 17_665_594_064u64, "peer": "BXScrY9i" } ],
            "cluster_size": 3 } });
        let routez = json!({ "num_routes": 3, "routes": [
            { "rid": 9, "remote_id": "NALM", "did_solicit": true, "is_configured": true, "ip": "127.0.0.1", "port": 19623, "rtt": "143µs", "uptime": "4s" },
            { "rid": 6, "remote_id": "NDGW", "did_solicit": true, "is_configured": true, "ip": "127.0.0.1", "port": 19622, "rtt": "116µs", "uptime": "4s" },
            { "rid": 7, "remote_id": "NDGW", "did_solicit": false, "is_configured": false, "ip": "127.0.0.1", "port": 40000 } ] });
        let view = ClusterView::from_monitoring(Some(&varz), Some(&jsz), Some(&routez));
        assert_eq!(view.name.as_deref(), Some("cx"));
        assert_eq!(view.this_node.as_deref(), Some("n1"));
        assert_eq!(view.size, Some(3));
        assert_eq!(view.meta_leader.as_deref(), Some("n1"));
        assert_eq!(view.peers_seen, 2, "a doubled route is one peer");
        assert_eq!(view.peers[0].address, "127.0.0.1:19623");
        assert_eq!(view.meta_peers.len(), 2);
        assert_eq!(view.meta_peers[1].active_ms, Some(17_665));
        let (level, reasons) = view.assess(&[], None);
        assert_eq!(level, Level::Degraded);
        assert_eq!(reasons, ["meta group peer n3 is not current"]);
        // A follower: no meta peers; an election: no leader.
        let jsz =
            json!({ "meta_cluster": { "name": "cx", "peer": "fqA4S4SK", "cluster_size": 3 } });
        let view =
            ClusterView::from_monitoring(Some(&varz), Some(&jsz), Some(&json!({ "routes": [] })));
        assert_eq!(view.meta_leader, None);
        assert!(view.meta_peers.is_empty());
        let (level, reasons) = view.assess(&[], None);
        assert_eq!(level, Level::Unhealthy);
        assert!(
            reasons[0].contains("no jetstream meta leader"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("routes to 0 of the 2 other nodes"),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_single_server_is_not_a_cluster() {
        let varz = json!({ "server_name": "prism-nats", "cluster": {} });
        let view = ClusterView::from_monitoring(Some(&varz), Some(&json!({ "memory": 0 })), None)
            .with_streams(&[info("MARKET_DATA", 1, json!({ "leader": "prism-nats" }))]);
        assert!(!view.clustered());
        let market = view.stream("MARKET_DATA").unwrap();
        assert_eq!(
            (market.status, market.replicas_current, market.quorum),
            (Level::Healthy, 1, true)
        );
        assert_eq!(
            view.assess(&["MARKET_DATA", "OTHER"], None),
            (Level::Healthy, vec![])
        );
    }

    #[test]
    fn a_stream_is_healthy_degraded_or_unhealthy_by_its_replicas() {
        let cluster = |leader: Option<&str>, replicas: Vec<Value>| {
            let mut c = json!({ "name": "cx", "replicas": replicas });
            if let Some(leader) = leader {
                c["leader"] = json!(leader);
            }
            c
        };
        let infos = [
            info(
                "ALL",
                3,
                cluster(
                    Some("n1"),
                    vec![peer("n3", true, None), peer("n2", true, None)],
                ),
            ),
            info(
                "ONE_DOWN",
                3,
                cluster(
                    Some("n1"),
                    vec![peer("n2", true, None), peer("n3", false, Some(42))],
                ),
            ),
            info(
                "TWO_DOWN",
                3,
                cluster(
                    Some("n1"),
                    vec![peer("n2", false, None), peer("n3", false, None)],
                ),
            ),
            info(
                "LEADERLESS",
                3,
                cluster(None, vec![peer("n2", true, None), peer("n3", true, None)]),
            ),
        ];
        let view = ClusterView {
            name: Some("cx".into()),
            meta_leader: Some("n1".into()),
            size: Some(3),
            peers_seen: 2,
            ..Default::default()
        }
        .with_streams(&infos);
        let all = view.stream("ALL").unwrap();
        assert_eq!(all.status, Level::Healthy);
        assert_eq!(
            all.peers
                .iter()
                .map(|p| (p.name.as_str(), p.leader))
                .collect::<Vec<_>>(),
            [("n1", true), ("n2", false), ("n3", false)],
            "leader first, then by name"
        );
        assert_eq!(all.replicas_current, 3);
        let one = view.stream("ONE_DOWN").unwrap();
        assert_eq!(
            (one.status, one.quorum, one.replicas_current, one.max_lag),
            (Level::Degraded, true, 2, 42)
        );
        assert_eq!(
            one.reason.as_deref(),
            Some("2 of 3 replicas current; not current: n3 (lag 42)")
        );
        let two = view.stream("TWO_DOWN").unwrap();
        assert_eq!((two.status, two.quorum), (Level::Unhealthy, false));
        assert_eq!(
            two.reason.as_deref(),
            Some("no quorum: 1 of 3 replicas current")
        );
        let leaderless = view.stream("LEADERLESS").unwrap();
        assert_eq!(
            (leaderless.status, leaderless.leader.as_deref()),
            (Level::Unhealthy, None)
        );
        assert_eq!(leaderless.reason.as_deref(), Some("no leader"));

        let (level, reasons) = view.assess(&["ALL", "ONE_DOWN", "GONE"], Some("n1"));
        assert_eq!(level, Level::Unhealthy);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[0].contains("same server name \"n1\""),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("stream ONE_DOWN: 2 of 3")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("stream GONE: not in the listing")),
            "{reasons:?}"
        );
        // Only a replica down: degraded, with the reason.
        let degraded = ClusterView {
            streams: vec![one.clone()],
            ..view.clone()
        };
        let (level, reasons) = degraded.assess(&["ONE_DOWN"], None);
        assert_eq!(level, Level::Degraded);
        assert_eq!(
            reasons,
            ["stream ONE_DOWN: 2 of 3 replicas current; not current: n3 (lag 42)"]
        );
    }

    #[test]
    fn a_replica_not_yet_placed_counts_as_missing() {
        let infos = [info(
            "NEW",
            3,
            json!({ "name": "cx", "leader": "n1", "replicas": [peer("n2", true, None)] }),
        )];
        let view = ClusterView {
            name: Some("cx".into()),
            ..Default::default()
        }
        .with_streams(&infos);
        let new = view.stream("NEW").unwrap();
        assert_eq!(
            (new.status, new.quorum, new.replicas_current),
            (Level::Degraded, true, 2)
        );
        assert_eq!(
            new.reason.as_deref(),
            Some("2 of 3 replicas current; 1 not placed")
        );
    }
}
