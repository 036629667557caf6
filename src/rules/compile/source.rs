//! Layer 4 (compile): a route's `source:` — core NATS in a queue group (the default) or a
//! durable JetStream consumer on a configured stream that captures the route's `from`.

use serde::Deserialize;

use super::fields::deserialize;
use super::input::TableSettings;
use crate::config::Span;
use crate::rules::pattern::SubjectPattern;
use crate::rules::route::RouteSource;
use crate::rules::yaml::{Node, Problem};
use crate::subject;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
enum RawSource {
    #[serde(rename = "core")]
    Core {
        #[serde(default)]
        queue_group: Option<String>,
    },
    #[serde(rename = "jetstream")]
    JetStream {
        stream: String,
        durable: String,
        #[serde(default)]
        ack_wait: Option<Span>,
        #[serde(default)]
        max_ack_pending: Option<i64>,
        #[serde(default)]
        max_deliver: Option<i64>,
    },
}

/// The route's source from its `source:` node (absent: core NATS in the default group).
/// `pattern` is the compiled `from`, when it compiled, to check the stream captures it.
pub(super) fn compile(
    node: Option<&Node>,
    pattern: Option<&SubjectPattern>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> Option<RouteSource> {
    let Some(node) = node else {
        return Some(RouteSource::Core {
            queue_group: settings.queue_group.clone(),
        });
    };
    let line = node.line;
    match deserialize::<RawSource>(node, "source", problems)? {
        RawSource::Core { queue_group } => Some(RouteSource::Core {
            queue_group: queue_group.unwrap_or_else(|| settings.queue_group.clone()),
        }),
        RawSource::JetStream {
            stream,
            durable,
            ack_wait,
            max_ack_pending,
            max_deliver,
        } => {
            let mut durable_ok = check_durable(&durable, line, problems);
            if settings
                .configured_durables
                .iter()
                .any(|(s, d)| s == &stream && d == &durable)
            {
                problems.push(Problem::new(
                    line,
                    format!(
                        "durable `{durable}` of stream `{stream}` is a configured consumer (consumers.{durable} in broker.yaml): a route needs a durable of its own"
                    ),
                ));
                durable_ok = false;
            }
            let stream_ok = check_stream(&stream, line, pattern, settings, problems);
            (durable_ok && stream_ok).then(|| RouteSource::JetStream {
                stream,
                durable,
                ack_wait: ack_wait.map_or(settings.consumer.ack_wait.duration(), Span::duration),
                max_ack_pending: max_ack_pending.unwrap_or(settings.consumer.max_ack_pending),
                max_deliver: max_deliver.unwrap_or(settings.consumer.max_deliver),
            })
        }
    }
}

fn check_durable(durable: &str, line: usize, problems: &mut Vec<Problem>) -> bool {
    let ok = !durable.is_empty()
        && !durable.contains(['.', '*', '>'])
        && !durable.contains(char::is_whitespace);
    if !ok {
        problems.push(Problem::new(
            line,
            format!("durable name {durable:?} may not be empty or hold '.', '*', '>' or spaces"),
        ));
    }
    ok
}

/// The stream must be configured and capture some subject of `from`.
fn check_stream(
    stream: &str,
    line: usize,
    pattern: Option<&SubjectPattern>,
    settings: &TableSettings,
    problems: &mut Vec<Problem>,
) -> bool {
    let Some(spec) = settings.streams.iter().find(|s| s.name == stream) else {
        problems.push(Problem::new(
            line,
            format!(
                "source stream `{stream}` is not configured (streams: {})",
                settings
                    .streams
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return false;
    };
    if let Some(p) = pattern {
        if !spec
            .subjects
            .iter()
            .any(|f| subject::overlap(f, p.filter()))
        {
            problems.push(Problem::new(
                line,
                format!(
                    "stream `{stream}` does not capture any subject of `from` {:?}",
                    p.as_str()
                ),
            ));
            return false;
        }
    }
    true
}
