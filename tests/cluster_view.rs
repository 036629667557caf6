//! The operator's view of a real three-node cluster of supervised brokers on loopback
//! (`tests/common/cluster.rs`): the cluster section of `/api/v1/broker/status`, the
//! `cluster` check of `/api/v1/broker/health` and the cluster metrics, against what
//! JetStream itself says — healthy with every node, degraded (200) with one node down,
//! unhealthy (503) without a quorum, healthy again once the nodes are back; and a duplicate
//! server name reported at runtime. Each test is bounded by the harness deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/metrics.rs"]
mod exposition;

use common::cluster::{node_name, ClusterBuilder, CLUSTER_DEADLINE};
use common::*;
use serde_json::{json, Value};

fn stream<'a>(cluster: &'a Value, name: &str) -> Option<&'a Value> {
    cluster["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// `data.cluster` of node `i`'s broker status once `check` accepts it.
async fn cluster_section(service: &Service, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, CLUSTER_DEADLINE, || async {
        let (status, body) = service.get("/api/v1/broker/status").await;
        assert_eq!(status, 200, "{body}");
        let cluster = body["data"]["cluster"].clone();
        check(&cluster).then_some(cluster)
    })
    .await
}

/// Health of a node once `check` accepts (status, body).
async fn health(
    service: &Service,
    what: &str,
    check: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    wait_for(what, CLUSTER_DEADLINE, || async {
        let (status, body) = service.get("/api/v1/broker/health").await;
        check(status, &body).then_some((status, body))
    })
    .await
}

async fn publish(service: &Service, i: u64) -> (u16, Value) {
    service
        .post(
            "/api/v1/broker/publish",
            &json!({ "subject": "trade.binance.spot.BTC-USDT", "message": { "i": i }, "persist": true }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_cluster_is_reported_healthy_then_degraded_then_unhealthy_then_healthy_again() {
    let mut cluster = ClusterBuilder::new(3).start().await;
    // The default streams got three replicas, and JetStream agrees.
    let info = cluster.stream_info("MARKET_DATA").await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let leader = cluster
        .wait_stream_current("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    let meta = cluster.wait_meta_leader(CLUSTER_DEADLINE).await;

    // Every node reports the same cluster, itself, its two peers and the leaders.
    for i in 0..3 {
        let section = cluster_section(cluster.node(i), "the full cluster section", |c| {
            c["peers_seen"] == 2
                && stream(c, "MARKET_DATA").is_some_and(|s| s["replicas_current"] == 3)
                && c["meta_leader"].is_string()
        })
        .await;
        assert_eq!(section["name"], cluster.name.as_str(), "{section}");
        assert_eq!(section["this_node"], node_name(i), "{section}");
        assert_eq!(section["size"], 3, "{section}");
        assert_eq!(section["meta_leader"], node_name(meta), "{section}");
        assert_eq!(section["peers"].as_array().unwrap().len(), 2, "{section}");
        let market = stream(&section, "MARKET_DATA").unwrap();
        assert_eq!(market["replicas"], 3, "{market}");
        assert_eq!(market["leader"], node_name(leader), "{market}");
        assert_eq!(market["status"], "healthy", "{market}");
        assert_eq!(market["quorum"], true, "{market}");
        let peers = market["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 3, "{market}");
        assert_eq!(peers[0]["name"], node_name(leader));
        assert_eq!(peers[0]["leader"], true);
        assert!(
            peers.iter().all(|p| p["current"] == true && p["lag"] == 0),
            "{market}"
        );
        let mut names: Vec<&str> = peers.iter().map(|p| p["name"].as_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(names, ["node0", "node1", "node2"]);

        let (status, body) = health(cluster.node(i), "healthy", |s, _| s == 200).await;
        assert_eq!(body["data"]["status"], "healthy", "{body}");
        let check = &body["data"]["checks"]["cluster"];
        assert_eq!(check["status"], "healthy", "{body}");
        assert_eq!(check["detail"]["this_node"], node_name(i));
        assert_eq!(check["detail"]["peers_seen"], 2);
        assert_eq!(status, 200);

        let metrics = exposition::scrape(cluster.node(i)).await;
        let market = [("stream", "MARKET_DATA")];
        assert_eq!(metrics.value("prism_cluster_peers", &[]), 2.0);
        assert_eq!(metrics.value("prism_cluster_meta_leader", &[]), 1.0);
        assert_eq!(metrics.value("prism_stream_replicas", &market), 3.0);
        assert_eq!(metrics.value("prism_stream_replicas_current", &market), 3.0);
        assert_eq!(metrics.value("prism_stream_replica_lag", &market), 0.0);
        assert_eq!(metrics.value("prism_stream_has_leader", &market), 1.0);
    }

    // One node down (not the one we watch): degraded, 200, with the reasons; publishing works.
    let (victim, watcher) = (2, 0);
    cluster.kill(victim);
    let (status, body) = health(
        cluster.node(watcher),
        "degraded with the stream's replica down",
        |s, b| {
            s == 200
                && b["data"]["checks"]["cluster"]["detail"]["reasons"]
                    .as_array()
                    .is_some_and(|r| {
                        r.iter().any(|r| {
                            r.as_str()
                                .unwrap_or("")
                                .starts_with("stream MARKET_DATA: 2 of 3 replicas current")
                        })
                    })
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "degraded", "{body}");
    assert_eq!(
        body["data"]["checks"]["cluster"]["status"], "degraded",
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("cluster"),
        "{body}"
    );
    let reasons = body["data"]["checks"]["cluster"]["detail"]["reasons"].to_string();
    assert!(
        reasons.contains("routes to 1 of the 2 other nodes"),
        "{reasons}"
    );
    assert!(
        reasons.contains(&node_name(victim)),
        "the replica down is named: {reasons}"
    );
    let section = cluster_section(cluster.node(watcher), "one peer seen", |c| {
        c["peers_seen"] == 1
    })
    .await;
    let market = stream(&section, "MARKET_DATA").unwrap();
    assert_eq!(market["status"], "degraded", "{market}");
    assert_eq!(market["quorum"], true, "{market}");
    let (status, body) = publish(cluster.node(watcher), 1).await;
    assert_eq!(status, 200, "a quorum stores: {body}");
    exposition::wait_metrics(
        cluster.node(watcher),
        "2 replicas current",
        CLUSTER_DEADLINE,
        |m| {
            let market = [("stream", "MARKET_DATA")];
            (m.value("prism_cluster_peers", &[]) == 1.0
                && m.value("prism_stream_replicas_current", &market) == 2.0)
                .then_some(())
        },
    )
    .await;

    // Two nodes down: no quorum, 503 naming the cluster; the meta leader gauge drops.
    let second = 1;
    cluster.kill(second);
    let (status, body) = health(
        cluster.node(watcher),
        "unhealthy without a quorum",
        |s, b| {
            s == 503
                && b["data"]["checks"]["cluster"]["status"] == "unhealthy"
                && b["data"]["checks"]["cluster"]["detail"]["meta_leader"].is_null()
        },
    )
    .await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    assert!(
        body["message"].as_str().unwrap().contains("cluster"),
        "{body}"
    );
    let reasons = body["data"]["checks"]["cluster"]["detail"]["reasons"].to_string();
    assert!(reasons.contains("no jetstream meta leader"), "{reasons}");
    exposition::wait_metrics(
        cluster.node(watcher),
        "no meta leader",
        CLUSTER_DEADLINE,
        |m| {
            (m.value("prism_cluster_meta_leader", &[]) == 0.0
                && m.value("prism_cluster_peers", &[]) == 0.0)
                .then_some(())
        },
    )
    .await;
    let (status, body) = cluster.node(watcher).get("/api/v1/broker/status").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["cluster"]["meta_leader"].is_null(), "{body}");
    assert_eq!(
        body["data"]["cluster"]["this_node"],
        node_name(watcher),
        "{body}"
    );

    // Both back (same data dirs): healthy again, without restarting the survivor.
    cluster.restart_listening(second).await;
    cluster.restart_listening(victim).await;
    cluster.wait_all_ready(CLUSTER_DEADLINE).await;
    cluster.wait_settled(CLUSTER_DEADLINE).await;
    let (_, body) = health(cluster.node(watcher), "healthy again", |s, b| {
        s == 200 && b["data"]["status"] == "healthy"
    })
    .await;
    assert_eq!(
        body["data"]["checks"]["cluster"]["detail"]["peers_seen"], 2,
        "{body}"
    );
    let (status, body) = publish(cluster.node(victim), 2).await;
    assert_eq!(status, 200, "{body}");

    // A graceful stop and restart of the seed (its reserved route port again): it rejoins
    // and catches up on what was stored meanwhile.
    cluster.stop(0);
    let (status, body) = publish(cluster.node(1), 3).await;
    assert_eq!(status, 200, "{body}");
    cluster.restart(0).await;
    assert_eq!(cluster.cluster_port(0), cluster.seed_port());
    cluster
        .wait_stream_current("MARKET_DATA", CLUSTER_DEADLINE)
        .await;
    let info = cluster.stream_info("MARKET_DATA").await.unwrap();
    assert_eq!(info.state.messages, 3, "every stored publish is there");
}

/// Two nodes given the same server name: the node that accepts the other's route refuses
/// it (nats-server logs it there only), and its health says why.
#[tokio::test]
async fn a_duplicate_server_name_is_reported_by_health() {
    let cluster = ClusterBuilder::new(2)
        .set("nats.server_name", json!("twin"))
        .start_listening()
        .await;
    let (status, body) = wait_for(
        "a node reporting the duplicate name",
        CLUSTER_DEADLINE,
        || async {
            for i in 0..2 {
                let (status, body) = cluster.node(i).get("/api/v1/broker/health").await;
                if body["data"]["checks"]["cluster"]["detail"]["duplicate_server_name"] == "twin" {
                    return Some((status, body));
                }
            }
            None
        },
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["data"]["checks"]["cluster"]["status"], "unhealthy",
        "{body}"
    );
    let reasons = body["data"]["checks"]["cluster"]["detail"]["reasons"].to_string();
    assert!(
        reasons.contains("same server name \\\"twin\\\""),
        "{reasons}"
    );
    assert!(
        (0..2).any(|i| cluster
            .log(i)
            .contains("a cluster peer has the same server name")),
        "logged"
    );
}
