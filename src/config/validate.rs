//! Semantic checks of a parsed config; returns every problem with its field path.

use std::collections::HashSet;

use super::streams::validate_stream_name;
use super::{BrokerConfig, ConfigProblem};
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
        if nats
            .cluster
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            problem("nats.cluster.name", "must not be empty when set".into());
        }
        if nats.cluster.name.is_none() && !nats.cluster.routes.is_empty() {
            problem(
                "nats.cluster.routes",
                "routes need nats.cluster.name".into(),
            );
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
        if !(1..=5).contains(&spec.replicas) {
            problem(
                &format!("{path}.replicas"),
                "must be between 1 and 5".into(),
            );
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
