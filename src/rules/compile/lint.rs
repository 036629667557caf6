//! Layer 4 (compile): the checks of an output against the rest of the world — a route whose
//! output could match its own `from` (a loop), and a `jetstream: true` output that no
//! stream captures. Works on compiled parts (pattern, condition, output) and the stream
//! list; imports no other compile file.

use crate::config::StreamSpec;
use crate::rules::condition::Condition;
use crate::rules::pattern::{split_tokens, SubjectPattern};
use crate::rules::route::CompiledOutput;
use crate::rules::yaml::Problem;
use crate::subject;

/// The most subjects of one output lint enumerates before falling back to `*`.
const MAX_EXPANSIONS: usize = 256;

/// The filters an output subject template can produce: literal tokens stay, a `{capture}`
/// limited by a top-level `eq` / `in` condition becomes each allowed value, any other
/// placeholder token `*`, and a multi-token placeholder (`{rest...}` capture, `{@subject}`)
/// ends the filter with `>`.
fn output_filters(
    template: &str,
    pattern: &SubjectPattern,
    when: Option<&Condition>,
) -> Vec<String> {
    let mut filters: Vec<Vec<String>> = vec![Vec::new()];
    for token in split_tokens(template) {
        let alternatives = token_alternatives(token, pattern, when);
        let ends = alternatives.iter().any(|a| a == ">");
        if filters.len() * alternatives.len() > MAX_EXPANSIONS {
            for f in &mut filters {
                f.push(if ends { ">".into() } else { "*".into() });
            }
        } else {
            filters = filters
                .into_iter()
                .flat_map(|f| {
                    alternatives.iter().map(move |a| {
                        let mut f = f.clone();
                        f.push(a.clone());
                        f
                    })
                })
                .collect();
        }
        if ends {
            break;
        }
    }
    filters.into_iter().map(|f| f.join(".")).collect()
}

/// What one token of an output subject template can become.
fn token_alternatives(
    token: &str,
    pattern: &SubjectPattern,
    when: Option<&Condition>,
) -> Vec<String> {
    if !token.contains('{') {
        return vec![token.to_string()];
    }
    if let Some(name) = token
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .filter(|n| !n.contains(['{', '}']))
    {
        if pattern.tail_capture() == Some(name) || name == "@subject" {
            return vec![">".into()];
        }
        return match (pattern.capture_names().iter().position(|c| c == name), when) {
            (Some(i), Some(w)) => w.capture_values(i).unwrap_or_else(|| vec!["*".into()]),
            _ => vec!["*".into()],
        };
    }
    if pattern
        .tail_capture()
        .is_some_and(|t| token.contains(&format!("{{{t}}}")))
        || token.contains("{@subject}")
    {
        vec![">".into()]
    } else {
        vec!["*".into()]
    }
}

/// Records a problem when `output` (whose subject is at `line`) could loop into the
/// route's own `from`, or is a JetStream output that no stream in `streams` captures.
pub(super) fn output(
    output: &CompiledOutput,
    line: usize,
    pattern: &SubjectPattern,
    when: Option<&Condition>,
    streams: &[StreamSpec],
    problems: &mut Vec<Problem>,
) {
    let filters = output_filters(output.subject.as_str(), pattern, when);
    if let Some(f) = filters
        .iter()
        .find(|f| subject::overlap(f, pattern.filter()))
    {
        problems.push(Problem::new(
            line,
            format!(
                "output {:?} could match its own `from` {:?} (a loop; e.g. {f})",
                output.subject.as_str(),
                pattern.as_str()
            ),
        ));
    }
    if output.jetstream {
        let uncaptured: Vec<&String> = filters
            .iter()
            .filter(|f| {
                !streams
                    .iter()
                    .any(|s| s.subjects.iter().any(|sf| subject::contains(sf, f)))
            })
            .collect();
        if !uncaptured.is_empty() {
            problems.push(Problem::new(
                line,
                format!(
                    "output {:?} has `jetstream: true` but no stream captures {}",
                    output.subject.as_str(),
                    uncaptured
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}
