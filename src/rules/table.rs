//! Layer 3 (compiled): the route table — every compiled route, immutable once built, shared
//! read-only by the router's per-route tasks ([`RouteTable::routes`]) and answering dry runs
//! ([`RouteTable::evaluate`]). Built by `compile/` (from texts) and `load.rs` (from the
//! directories), which sit above this file.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::headers::Headers;
use super::route::{CompiledRoute, RouteOutcome};

/// The compiled, immutable route table.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<CompiledRoute>>,
    transforms: Vec<String>,
}

/// One route's result in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteResult {
    pub route: String,
    #[serde(flatten)]
    pub outcome: RouteOutcome,
}

impl RouteTable {
    /// A table of `routes` (in file order) and the names of the pipelines they could use.
    pub(crate) fn new(routes: Vec<Arc<CompiledRoute>>, transforms: Vec<String>) -> RouteTable {
        RouteTable { routes, transforms }
    }

    /// Every route, in file order (files sorted by name).
    pub fn routes(&self) -> &[Arc<CompiledRoute>] {
        &self.routes
    }

    pub fn route(&self, name: &str) -> Option<&Arc<CompiledRoute>> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// Names of the named pipelines loaded from `transforms/`.
    pub fn transform_names(&self) -> &[String] {
        &self.transforms
    }

    /// Dry run: every route whose `from` matches `subject`, with what it would do.
    pub fn evaluate(
        &self,
        subject: &str,
        headers: &Headers,
        payload: &Bytes,
        now_ms: i64,
    ) -> Vec<RouteResult> {
        self.routes
            .iter()
            .filter_map(|r| match r.process(subject, headers, payload, now_ms) {
                RouteOutcome::NoMatch => None,
                outcome => Some(RouteResult {
                    route: r.name.clone(),
                    outcome,
                }),
            })
            .collect()
    }
}
