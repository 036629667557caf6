//! Environment overrides from the seeds: `API_HOST`, `API_PORT`, `NATS_URL`, `LOG_LEVEL`,
//! `ENVIRONMENT`, plus `PRISM_API_TOKEN` and the Python service's `COLLECTOR_TTL_SEC`
//! (seconds, `collectors.ttl`). They win over the file.

use std::collections::HashMap;

use super::{BrokerConfig, ConfigProblem, UrlList};

/// Where overrides are read from: the process environment, or a fixed map in tests.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    vars: HashMap<String, String>,
}

/// The variables read, in the order they are applied.
pub const ENV_VARS: [&str; 7] = [
    "API_HOST",
    "API_PORT",
    "NATS_URL",
    "LOG_LEVEL",
    "ENVIRONMENT",
    "PRISM_API_TOKEN",
    "COLLECTOR_TTL_SEC",
];

impl EnvSource {
    pub fn process() -> Self {
        let vars = ENV_VARS
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
            .collect();
        EnvSource { vars }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvSource { vars }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Applies the overrides; returns problems for values that do not parse.
pub fn apply_env_overrides(config: &mut BrokerConfig, env: &EnvSource) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if let Some(host) = env.get("API_HOST") {
        config.service.host = host.to_string();
    }
    if let Some(port) = env.get("API_PORT") {
        match port.parse() {
            Ok(port) => config.service.port = port,
            Err(_) => problems.push(ConfigProblem::new(
                "service.port",
                format!("API_PORT={port:?} is not a port number"),
            )),
        }
    }
    if let Some(url) = env.get("NATS_URL") {
        config.nats.url = UrlList::One(url.to_string());
    }
    if let Some(level) = env.get("LOG_LEVEL") {
        config.service.log_level = level.to_lowercase();
    }
    if let Some(environment) = env.get("ENVIRONMENT") {
        config.service.environment = environment.to_string();
    }
    if let Some(token) = env.get("PRISM_API_TOKEN") {
        config.service.api_token = Some(token.to_string());
    }
    if let Some(ttl) = env.get("COLLECTOR_TTL_SEC") {
        match ttl.trim().parse::<u64>() {
            Ok(secs) => config.collectors.ttl = super::Span::secs(secs),
            Err(_) => problems.push(ConfigProblem::new(
                "collectors.ttl",
                format!("COLLECTOR_TTL_SEC={ttl:?} is not a whole number of seconds"),
            )),
        }
    }
    problems
}
