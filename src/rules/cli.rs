//! The `check` and `test` commands: lint config, routes and transforms; run route test files.
//! Both print to stdout / stderr and return the process exit status; neither needs NATS.
//!
//! Layer 6 (tools) of [`crate::rules`], on top of everything: config, `load`, `testcase`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, BrokerConfig};

use super::route::RouteSource;
use super::table::RouteTable;
use super::testcase;

/// The config at `path`, read as `serve` reads it ([`config::load`]); a config that does
/// not load is printed and gives `None`.
fn load_config(path: &Path) -> Option<BrokerConfig> {
    config::load(path).map_err(|e| eprintln!("{e}")).ok()
}

/// `prism-broker check`: lints config, routes and transforms, prints `file:line: problem`
/// lines and returns exit status 1 on any problem, or a summary and 0.
pub fn check(config_path: &Path) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::from(1);
    };
    let table = match RouteTable::load_for(&config) {
        Ok(t) => t,
        Err(e) => {
            let problems = e.problems();
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s)", problems.len());
            return ExitCode::from(1);
        }
    };
    let streams = config.effective_streams();
    println!(
        "{}: ok ({} streams: {})",
        config_path.display(),
        streams.len(),
        streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "routes: {} from {}; transforms: {} from {}",
        table.routes().len(),
        config.router.routes_dir.display(),
        table.transform_names().len(),
        config.router.transforms_dir.display()
    );
    println!("subscriptions:");
    for route in table.routes() {
        let source = match &route.source {
            RouteSource::Core { queue_group } => format!("core, queue group {queue_group}"),
            RouteSource::JetStream {
                stream, durable, ..
            } => format!("jetstream {stream}, durable {durable}"),
        };
        let outputs: Vec<String> = route
            .outputs
            .iter()
            .map(|o| {
                format!(
                    "{}{}",
                    o.subject.as_str(),
                    if o.jetstream { " (jetstream)" } else { "" }
                )
            })
            .collect();
        println!(
            "  {:<24} {:<22} [{source}] -> {}",
            route.name,
            route.subscription(),
            outputs.join(", ")
        );
    }
    for warning in stateful_warnings(&table) {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

/// A route that keeps state per key is right only when every message of a key reaches one
/// broker; a queue group (or a shared durable) spreads a key's messages over every broker
/// that runs the route.
pub fn stateful_warnings(table: &RouteTable) -> Vec<String> {
    table
        .routes()
        .iter()
        .filter(|r| r.is_stateful())
        .map(|r| {
            let kinds = r.stateful_kinds().join(", ");
            let shared = match &r.source {
                // the router subscribes in `{group}.{route}` (router/task.rs, queue_name)
                RouteSource::Core { queue_group } => {
                    format!("core queue group {queue_group}.{}", r.name)
                }
                RouteSource::JetStream { durable, .. } => format!("shared durable {durable}"),
            };
            format!(
                "{}: route {} keeps state per key ({kinds}) and takes its messages through the \
                 {shared}: when several brokers run it, each sees only part of every key and its \
                 state is wrong; run it on one broker, or give each broker its own queue group \
                 (outputs with a msg_id are then stored once), or split the keys between \
                 brokers by subject (README, \"Stateful routes\")",
                r.origin, r.name
            )
        })
        .collect()
}

/// `prism-broker test DIR`: runs every `*.test.yaml` in `dir` against the route table.
pub fn test(dir: &Path, config_path: &Path) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::from(1);
    };
    let table = match RouteTable::load_for(&config) {
        Ok(t) => t,
        Err(e) => {
            for p in e.problems() {
                eprintln!("{p}");
            }
            eprintln!("the route table does not load; no case was run");
            return ExitCode::from(1);
        }
    };
    let files = match test_files(dir) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            eprintln!("{}: no *.test.yaml files", dir.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("{}: cannot read: {e}", dir.display());
            return ExitCode::from(1);
        }
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                failed += 1;
                continue;
            }
        };
        let cases = match testcase::parse_file(&name, &text) {
            Ok(c) => c,
            Err(errors) => {
                for e in errors {
                    println!("FAIL {e}");
                    failed += 1;
                }
                continue;
            }
        };
        for located in cases {
            let diff = testcase::run_case(&table, &located.case);
            if diff.is_empty() {
                passed += 1;
                println!("ok   {name}:{}: {}", located.line, located.case.name);
            } else {
                failed += 1;
                println!("FAIL {name}:{}: {}", located.line, located.case.name);
                for line in diff {
                    println!("     {line}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn test_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".test.yaml"))
        })
        .collect();
    files.sort();
    Ok(files)
}
