//! The `check` and `test` commands: lint config, routes and transforms; run route test files.

use std::path::Path;
use std::process::ExitCode;

/// `prism-broker check`: lints config, routes and transforms, prints `file:line: problem`
/// lines and returns exit status 1 on any problem, or a summary and 0.
pub fn check(_config_path: &Path) -> ExitCode {
    eprintln!("check: not implemented yet");
    ExitCode::from(1)
}

/// `prism-broker test DIR`: runs every `*.test.yaml` in `dir` against the route table.
pub fn test(_dir: &Path, _config_path: &Path) -> ExitCode {
    eprintln!("test: not implemented yet");
    ExitCode::from(1)
}
