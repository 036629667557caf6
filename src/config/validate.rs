//! Semantic checks of a parsed config; returns every problem with its field path.

use std::collections::HashSet;

use super::streams::validate_stream_name;
use super::{split_host_port, BrokerConfig, ConfigProblem, NatsConfig, RouteUrl};
use crate::subject;

pub fn validate(config: &BrokerConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |path: &str, message: String| problems.push(ConfigProblem::new(path, message));

    let service = &config.service;
    if service.host.trim().is_empty() {
        problem("service.host", "must not be empty".into());
    }
    if service
        .api_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        problem("service.api_token", "must not be empty when set".into());
    }
    if service.max_request_size.bytes() == 0 {
        problem("service.max_request_size", "must be greater than 0".into());
    }
    if service.request_timeout.duration().is_zero() {
        problem("service.request_timeout", "must be greater than 0".into());
    }
    if service
        .ports_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty() || p.file_name().is_none())
    {
        problem("service.ports_file", "must be a file path when set".into());
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&service.log_level) {
        problem("service.log_level", format!("invalid level or filter: {e}"));
    }

    let nats = &config.nats;
    if nats.auto_start {
        if nats.binary.trim().is_empty() {
            problem("nats.binary", "must not be empty".into());
        }
        // A port 0 is picked by nats-server; only fixed ports can collide.
        let mut ports = vec![("nats.port", nats.port), ("nats.http_port", nats.http_port)];
        if nats.cluster.name.is_some() {
            ports.push(("nats.cluster.port", nats.cluster.port));
        }
        for (i, (path, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port && *port != 0) {
                problem(path, format!("port {port} is also used by {other}"));
            }
        }
        if nats.data_dir.as_os_str().is_empty() {
            problem("nats.data_dir", "must not be empty".into());
        }
        if nats.jetstream.max_memory.bytes() == 0 {
            problem("nats.jetstream.max_memory", "must be greater than 0".into());
        }
        if nats.jetstream.max_storage.bytes() == 0 {
            problem(
                "nats.jetstream.max_storage",
                "must be greater than 0".into(),
            );
        }
        if nats.limits.max_payload.bytes() == 0 || nats.limits.max_payload.bytes() > 64 << 20 {
            problem(
                "nats.limits.max_payload",
                "must be between 1 byte and 64MB".into(),
            );
        }
        if nats.limits.max_connections == 0 {
            problem(
                "nats.limits.max_connections",
                "must be greater than 0".into(),
            );
        }
        for (path, message) in cluster_problems(nats) {
            problem(&path, message);
        }
        let mut users = HashSet::new();
        for (i, user) in nats.users.iter().enumerate() {
            let path = format!("nats.users[{i}]");
            if user.user.trim().is_empty() {
                problem(&format!("{path}.user"), "must not be empty".into());
            } else if !users.insert(user.user.as_str()) {
                problem(
                    &format!("{path}.user"),
                    format!("duplicate user {:?}", user.user),
                );
            } else if user.user == crate::nats::BROKER_USER {
                problem(
                    &format!("{path}.user"),
                    format!("{:?} is reserved for the broker itself", user.user),
                );
            }
            if user.password.is_empty() {
                problem(&format!("{path}.password"), "must not be empty".into());
            }
            if let Some(perms) = &user.permissions {
                for (kind, list) in [("publish", &perms.publish), ("subscribe", &perms.subscribe)] {
                    for (j, filter) in list.iter().enumerate() {
                        if let Err(e) = subject::validate_filter(filter) {
                            problem(&format!("{path}.permissions.{kind}[{j}]"), e);
                        }
                    }
                }
            }
        }
        if let Some(tls) = &nats.tls {
            for (path, file) in [
                ("nats.tls.cert_file", &tls.cert_file),
                ("nats.tls.key_file", &tls.key_file),
            ] {
                if file.as_os_str().is_empty() {
                    problem(path, "must be set".into());
                }
            }
            if tls.verify && tls.ca_file.is_none() {
                problem("nats.tls.ca_file", "verify: true needs a ca_file".into());
            }
        }
        let (initial, max) = (nats.restart.initial_backoff, nats.restart.max_backoff);
        if initial.duration().is_zero() || initial > max {
            problem(
                "nats.restart.initial_backoff",
                "must be greater than 0 and at most max_backoff".into(),
            );
        }
        if nats.restart.crash_window.duration().is_zero() {
            problem("nats.restart.crash_window", "must be greater than 0".into());
        }
        if nats.restart.crash_loop_after == 0 {
            problem("nats.restart.crash_loop_after", "must be at least 1".into());
        }
        let hang = nats.hang_timeout.duration();
        if !hang.is_zero() && hang < std::time::Duration::from_secs(2) {
            problem(
                "nats.hang_timeout",
                "must be at least 2s (the probe's own timeout), or 0 to never restart a hung server"
                    .into(),
            );
        }
        if nats.ready_timeout.duration().is_zero() {
            problem("nats.ready_timeout", "must be greater than 0".into());
        }
    } else {
        let urls = nats.url.to_vec();
        if urls.is_empty() {
            problem(
                "nats.url",
                "auto_start is false: at least one url is needed".into(),
            );
        }
        for url in urls {
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| url.starts_with(s))
                || !url.contains("://");
            if !scheme_ok {
                problem(
                    "nats.url",
                    format!("{url:?}: scheme must be nats, tls, ws or wss"),
                );
            }
        }
    }

    let mut seen_subjects: Vec<(String, String)> = Vec::new();
    for spec in config.effective_streams() {
        let path = format!("streams.{}", spec.name);
        if let Err(e) = validate_stream_name(&spec.name) {
            problem(&path, e);
        }
        if spec.subjects.is_empty() {
            problem(
                &format!("{path}.subjects"),
                "at least one subject is needed".into(),
            );
        }
        for (i, filter) in spec.subjects.iter().enumerate() {
            if let Err(e) = subject::validate_filter(filter) {
                problem(&format!("{path}.subjects[{i}]"), e);
                continue;
            }
            if let Some((other, other_filter)) = seen_subjects
                .iter()
                .find(|(_, f)| subject::overlap(f, filter))
            {
                problem(
                    &format!("{path}.subjects[{i}]"),
                    format!("{filter:?} overlaps {other_filter:?} of stream {other}"),
                );
            }
        }
        for filter in &spec.subjects {
            seen_subjects.push((spec.name.clone(), filter.clone()));
        }
        if let Some(message) = replicas_problem(&config.nats, spec.replicas) {
            problem(&format!("{path}.replicas"), message);
        }
        if spec.max_msgs > i64::MAX as u64 {
            problem(&format!("{path}.max_msgs"), "too large".into());
        }
    }

    let router = &config.router;
    if router.dead_letter_prefix.is_empty()
        || subject::validate_subject(&router.dead_letter_prefix).is_err()
    {
        problem(
            "router.dead_letter_prefix",
            format!(
                "{:?} is not a valid subject prefix",
                router.dead_letter_prefix
            ),
        );
    }
    if router.queue_group.trim().is_empty() || router.queue_group.contains(char::is_whitespace) {
        problem(
            "router.queue_group",
            "must be a non-empty name without spaces".into(),
        );
    }
    if router.consumer.max_ack_pending < 1 {
        problem(
            "router.consumer.max_ack_pending",
            "must be at least 1".into(),
        );
    }
    if router.consumer.max_deliver < 1 {
        problem("router.consumer.max_deliver", "must be at least 1".into());
    }
    if !(1..=64).contains(&router.threads) {
        problem("router.threads", "must be between 1 and 64".into());
    }
    if !(1..=256).contains(&router.partition_workers) {
        problem(
            "router.partition_workers",
            "must be between 1 and 256".into(),
        );
    }
    if router.consumer.ack_wait.duration().is_zero() {
        problem("router.consumer.ack_wait", "must be greater than 0".into());
    }
    problems.extend(super::collectors::validate(&config.collectors));
    problems.extend(super::consumers::validate(
        &config.consumers,
        &config.effective_streams(),
    ));
    problems
}

/// Problems of `nats.server_name` and `nats.cluster` (supervised mode): what a node of a
/// JetStream cluster needs to start and to be told apart.
/// What is wrong with a stream of `replicas` on the server `nats` describes: 1 to 5, 1
/// when the supervised server is not clustered, at most the cluster's size. An invalid
/// `nats.cluster.size` is reported on its own, so it bounds nothing here.
pub fn replicas_problem(nats: &NatsConfig, replicas: usize) -> Option<String> {
    match nats.cluster_size().filter(|s| (1..=64).contains(s)) {
        _ if !(1..=5).contains(&replicas) => Some("must be between 1 and 5".into()),
        Some(_) if !nats.clustered() && replicas > 1 => Some(format!(
            "{replicas} replicas need a cluster: the supervised server is not clustered (nats.cluster.name), so a stream has 1 replica"
        )),
        Some(size) if replicas > size => Some(format!(
            "{replicas} replicas but the cluster has {size} nodes (1 + distinct nats.cluster.routes, or nats.cluster.size)"
        )),
        _ => None,
    }
}

fn cluster_problems(nats: &NatsConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: String| problems.push((path.to_string(), message));
    let cluster = &nats.cluster;
    if let Some(name) = &nats.server_name {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            problem(
                "nats.server_name",
                "must be a non-empty name without spaces".into(),
            );
        }
    }
    let Some(name) = &cluster.name else {
        for (field, set) in [
            ("routes", !cluster.routes.is_empty()),
            ("advertise", cluster.advertise.is_some()),
            ("authorization", cluster.authorization.is_some()),
            ("size", cluster.size.is_some()),
        ] {
            if set {
                problem(
                    &format!("nats.cluster.{field}"),
                    "needs nats.cluster.name (the cluster is off without it)".into(),
                );
            }
        }
        return problems;
    };
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        problem(
            "nats.cluster.name",
            "must be a non-empty name without spaces".into(),
        );
    }
    if nats.server_name.is_none() {
        problem(
            "nats.server_name",
            "must be set when clustering: each node needs its own name, unique in the cluster"
                .into(),
        );
    }
    if cluster.routes.is_empty() {
        problem(
            "nats.cluster.routes",
            "a JetStream cluster node needs at least one route to another node (nats-route://host:port)"
                .into(),
        );
    }
    let mut seen = Vec::new();
    for (i, route) in cluster.routes.iter().enumerate() {
        match RouteUrl::parse(route) {
            Ok(url) => {
                let key = (url.host.to_ascii_lowercase(), url.port);
                if seen.contains(&key) {
                    problem(
                        &format!("nats.cluster.routes[{i}]"),
                        format!("{route:?} is listed twice"),
                    );
                }
                seen.push(key);
            }
            Err(e) => problem(&format!("nats.cluster.routes[{i}]"), e),
        }
    }
    if let Some(advertise) = &cluster.advertise {
        match split_host_port(advertise) {
            Some((_, port)) if port != 0 => {}
            _ => problem(
                "nats.cluster.advertise",
                format!("{advertise:?}: expected host:port with a port between 1 and 65535"),
            ),
        }
    }
    match &cluster.authorization {
        Some(auth) => {
            if auth.user.trim().is_empty() {
                problem(
                    "nats.cluster.authorization.user",
                    "must not be empty".into(),
                );
            }
            if auth.password.is_empty() {
                problem(
                    "nats.cluster.authorization.password",
                    "must not be empty".into(),
                );
            }
        }
        None if !nats.users.is_empty() => problem(
            "nats.cluster.authorization",
            "nats.users is set: routes need credentials too ({user, password}), or any host reaching the route port joins the cluster"
                .into(),
        ),
        None => {}
    }
    if let Some(size) = cluster.size {
        if !(1..=64).contains(&size) {
            problem("nats.cluster.size", "must be between 1 and 64".into());
        }
    }
    problems
}
