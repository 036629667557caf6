//! `prism-broker check` and `prism-broker test DIR` as a user runs them: exit codes and output,
//! on the shipped rules and on broken ones in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn broker(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism-broker"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run prism-broker")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary project: broker.yaml pointing at its own routes.d / transforms.
fn project(routes: &str, transforms: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broker.yaml"),
        "router:\n  routes_dir: routes.d\n  transforms_dir: transforms\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("routes.d")).unwrap();
    std::fs::create_dir(dir.path().join("transforms")).unwrap();
    std::fs::write(dir.path().join("routes.d/main.yaml"), routes).unwrap();
    for (name, body) in transforms {
        std::fs::write(dir.path().join("transforms").join(name), body).unwrap();
    }
    dir
}

#[test]
fn check_passes_on_the_shipped_rules_and_summarises() {
    let out = broker(&["check"], repo());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("routes: 7 from routes.d; transforms: 5 from transforms"),
        "{stdout}"
    );
    // the stateful shipped routes are shared through a core queue group: check says so
    assert!(
        stdout.contains("warning: routes.d/market-state.yaml:")
            && stdout.contains("route trade-candles-1m keeps state per key (dedupe, window)")
            && stdout.contains("core queue group prism-router.trade-candles-1m"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("route trades-canonical keeps state"),
        "{stdout}"
    );
    assert!(stdout.contains("trades-canonical"), "{stdout}");
    assert!(stdout.contains("trade.*.*.*"), "{stdout}");
    assert!(
        stdout.contains("jetstream MARKET_DATA, durable prism-large-liquidations"),
        "{stdout}"
    );
}

#[test]
fn shipped_route_tests_pass() {
    let out = broker(&["test", "tests/routes"], repo());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn check_prints_every_problem_with_file_and_line_and_exits_1() {
    let dir = project(
        "routes:\n  - name: loop\n    from: a.{x}\n    to: [{subject: 'a.{x}'}]\n  - name: js\n    from: b.{x}\n    transform: [nope]\n    to: [{subject: 'out.{x}', jetstream: true}]\n",
        &[],
    );
    let out = broker(&["check", "--config", "broker.yaml"], dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(
            "routes.d/main.yaml:4: route loop: output \"a.{x}\" could match its own `from`"
        )),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("routes.d/main.yaml:7: route js: unknown transform `nope`")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "routes.d/main.yaml:8: route js: output \"out.{x}\" has `jetstream: true`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

#[test]
fn check_reports_a_broken_config() {
    let dir = project("routes: []\n", &[]);
    std::fs::write(dir.path().join("broker.yaml"), "router: {colour: red}\n").unwrap();
    let out = broker(&["check", "--config", "broker.yaml"], dir.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("colour"), "{stderr}");
    let missing = broker(&["check", "--config", "absent.yaml"], dir.path());
    assert_eq!(
        missing.status.code(),
        Some(1),
        "an explicit config must exist"
    );
}

#[test]
fn test_prints_a_readable_diff_and_exits_1_on_failure() {
    let dir = project(
        "routes:\n  - name: num\n    from: p.{x}\n    transform: [{to_number: [v]}]\n    to: [{subject: 'q.{x}'}]\n",
        &[],
    );
    std::fs::create_dir(dir.path().join("cases")).unwrap();
    std::fs::write(
        dir.path().join("cases/num.test.yaml"),
        r#"cases:
  - name: right
    subject: p.a
    payload: {"v": "1.5", "w": 1}
    expect:
      outputs: [{subject: q.a, payload: {"v": 1.5, "w": 1}}]
  - name: wrong value and subject
    subject: p.a
    payload: {"v": "2"}
    expect:
      outputs: [{subject: q.b, payload_subset: {"v": 3}}]
  - name: expected a drop but got a dead letter
    subject: p.a
    payload: {"v": "x"}
    expect:
      drop: true
  - name: dead letter as expected
    subject: p.a
    payload: {"v": "x"}
    expect:
      dead_letters: [{route: num, error: "numeric string"}]
"#,
    )
    .unwrap();
    let out = broker(&["test", "cases", "--config", "broker.yaml"], dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ok   cases/num.test.yaml:2: right"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL cases/num.test.yaml:7: wrong value and subject"),
        "{stdout}"
    );
    assert!(
        stdout.contains("outputs[0].subject: expected q.b, got q.a"),
        "{stdout}"
    );
    assert!(
        stdout.contains("outputs[0].payload.v: expected 3, got 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL cases/num.test.yaml:12: expected a drop but got a dead letter"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected 0 dead letter(s), got 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   cases/num.test.yaml:17: dead letter as expected"),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 2 failed"), "{stdout}");
}

#[test]
fn test_refuses_an_invalid_table_or_an_empty_dir() {
    let dir = project("routes:\n  - name: x\n    from: a\n", &[]);
    std::fs::create_dir(dir.path().join("cases")).unwrap();
    let out = broker(&["test", "cases", "--config", "broker.yaml"], dir.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("routes.d/main.yaml:2: route x: missing field `to`"),
        "{stderr}"
    );
    let ok = project("routes: []\n", &[]);
    std::fs::create_dir(ok.path().join("cases")).unwrap();
    let out = broker(&["test", "cases", "--config", "broker.yaml"], ok.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("no *.test.yaml files"));
}

/// `prism-broker test … | head -1`: a reader that goes away ends the command quietly,
/// without a panic message.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism-broker"))
        .args(["test", "tests/routes"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prism-broker");
    // Close the read end before the command writes its report.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for prism-broker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
