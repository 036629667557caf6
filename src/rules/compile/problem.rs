//! Layer 4 (compile): what compilation gives when the files are wrong — every problem as
//! `file:line: route NAME: problem` ([`RuleProblem`]), gathered in a [`TableError`].
//! Imports only the line-level [`Problem`] of the YAML layer.

use std::fmt;

use serde::Serialize;

use crate::rules::yaml::Problem;

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<RuleProblem>),
}

impl TableError {
    /// Every problem, one per line of the `Display` form.
    pub fn problems(&self) -> Vec<RuleProblem> {
        match self {
            TableError::Read { path, source } => vec![RuleProblem {
                file: path.clone(),
                line: 0,
                context: None,
                message: format!("cannot read: {source}"),
            }],
            TableError::Invalid(problems) => problems.clone(),
        }
    }
}

/// One problem in a rule file: `file:line: route NAME: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub file: String,
    pub line: usize,
    /// `route NAME` or `transform NAME`, when the problem belongs to one.
    pub context: Option<String>,
    pub message: String,
}

impl RuleProblem {
    /// A line-level problem placed in `file`, under `context`.
    pub(crate) fn at(file: &str, context: Option<String>, p: Problem) -> RuleProblem {
        RuleProblem {
            file: file.to_string(),
            line: p.line,
            context,
            message: p.message,
        }
    }
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}
