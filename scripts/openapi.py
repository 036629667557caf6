#!/usr/bin/env python3
"""Writes docs/openapi.json, the OpenAPI 3 document of prism-broker's HTTP API.

Edit the tables below when an endpoint changes, run `python3 scripts/openapi.py`, and commit
both files. tests/api.rs checks the document against the routes the service registers.
"""
import json
import pathlib

ENVELOPE_OK = {
    "type": "object",
    "required": ["status", "message", "data", "timestamp"],
    "properties": {
        "status": {"type": "string", "enum": ["success"]},
        "message": {"type": "string"},
        "data": {},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}
ENVELOPE_ERR = {
    "type": "object",
    "required": ["status", "error_code", "message", "data", "timestamp"],
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "error_code": {
            "type": "string",
            "enum": [
                "NATS_CONNECTION_ERROR", "STREAM_NOT_FOUND",
                "STREAM_CREATION_ERROR", "MESSAGE_PUBLISH_ERROR", "INVALID_STREAM_DATA",
                "INVALID_MESSAGE_DATA", "JETSTREAM_ERROR", "INVALID_PARAMETERS",
                "SERVICE_UNAVAILABLE", "UNAUTHORIZED", "PAYLOAD_TOO_LARGE",
                "ROUTE_NOT_FOUND", "INVALID_ROUTES", "NOT_FOUND", "METHOD_NOT_ALLOWED",
                "STREAM_UNAVAILABLE", "STORAGE_FULL",
            ],
        },
        "message": {"type": "string"},
        "data": {"nullable": True},
        "timestamp": {"type": "string", "format": "date-time"},
    },
}
STREAM_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "no spaces, dots, wildcards or slashes"},
        "subjects": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "description": {"type": "string"},
        "retention": {"type": "string", "enum": ["limits", "interest", "workqueue"]},
        "storage": {"type": "string", "enum": ["file", "memory"]},
        "max_age": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "example": "1h"}],
                    "description": "seconds, or 250ms / 30s / 5m / 1h / 7d; 0 = forever"},
        "max_msgs": {"type": "integer", "minimum": 0, "description": "0 = unlimited"},
        "max_bytes": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "example": "1GB"}]},
        "max_msg_size": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "example": "1MB"}]},
        "discard": {"type": "string", "enum": ["old", "new"]},
        "duplicate_window": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "example": "2m"}]},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
PUBLISH_BODY = {
    "type": "object",
    "required": ["subject", "message"],
    "additionalProperties": False,
    "properties": {
        "subject": {"type": "string", "description": "concrete subject: no wildcards, spaces or empty tokens"},
        "message": {"description": "any JSON value; objects and arrays are sent as compact JSON, strings as raw text"},
        "headers": {"type": "object", "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
        "msg_id": {"type": "string", "description": "becomes Nats-Msg-Id (de-duplication in the stream's window)"},
        "persist": {"type": "boolean", "default": False,
                    "description": "true: the message must be stored by a stream; 404 STREAM_NOT_FOUND instead of a core NATS publish when no stream captures the subject"},
    },
}
PUBLISH_RESULT = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "jetstream": {"type": "boolean", "description": "true: stored and acked by `stream`; false: sent on core NATS (no stream captures the subject)"},
        "stream": {"type": "string", "nullable": True},
        "sequence": {"type": "integer", "description": "the stream sequence (JetStream only)"},
        "duplicate": {"type": "boolean", "description": "msg_id seen within the duplicate window (JetStream only)"},
        "message_id": {"type": "integer", "nullable": True, "description": "the stream sequence, as the Python service answered; null for core NATS"},
        "published_at": {"type": "string", "format": "date-time"},
        "message_size": {"type": "integer", "description": "payload bytes"},
    },
}
COLLECTOR = {
    "type": "object",
    "description": "The latest heartbeat of one data collector, as the Python message-broker showed it",
    "properties": {
        "instance": {"type": "string", "description": "payload `instance`, or the last token of the subject"},
        "hostname": {"type": "string", "nullable": True},
        "pid": {"type": "integer", "nullable": True},
        "last_ts": {"type": "integer", "description": "Unix seconds when the broker received the latest heartbeat"},
        "age_sec": {"type": "integer", "description": "seconds since then"},
        "uptime_sec": {"type": "number", "nullable": True, "description": "as the collector sent it"},
        "active_managers": {"type": "integer", "nullable": True},
        "exchanges": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "stale": {"type": "boolean", "description": "no heartbeat for more than collectors.stale_after (30 s)"},
    },
}
COLLECTORS = {
    "type": "object",
    "description": "Collectors heard from on collectors.subject (health.collector.>), sorted by instance; "
                   "forgotten after collectors.ttl (COLLECTOR_TTL_SEC, 600 s)",
    "properties": {
        "count": {"type": "integer"},
        "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Collector"}},
    },
}
BATCH_BODY = {
    "oneOf": [
        {"type": "object", "required": ["messages"], "properties": {
            "messages": {"type": "array", "maxItems": 1000, "minItems": 1, "items": PUBLISH_BODY}}},
        {"type": "array", "maxItems": 1000, "minItems": 1, "items": PUBLISH_BODY},
    ]
}


SNAPSHOT = {
    "type": "object",
    "description": "How old the figures that need a NATS round trip are (streams, server info, JetStream "
                   "usage). They are read in the background about every second, at once after a stream "
                   "change through the API and at every NATS (re)connection; requests never wait for NATS. "
                   "While stale, stream figures are left out (never shown as live).",
    "required": ["taken_at", "age_ms", "stale", "error"],
    "properties": {
        "taken_at": {"type": "string", "format": "date-time", "nullable": True,
                     "description": "when the figures were read; null before the first read"},
        "age_ms": {"type": "integer", "minimum": 0, "nullable": True,
                   "description": "milliseconds between taken_at and this answer"},
        "stale": {"type": "boolean",
                  "description": "true while NATS is not connected, when the figures predate the latest "
                                 "reconnection, when the latest refresh failed, or when a stream change made "
                                 "through the API is not in them yet"},
        "error": {"type": "string", "nullable": True, "description": "why they are stale"},
    },
}

REPLICA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "server name of the node"},
        "leader": {"type": "boolean"},
        "current": {"type": "boolean", "description": "up to date with the leader (the leader always is)"},
        "offline": {"type": "boolean", "description": "the group considers the node offline"},
        "lag": {"type": "integer", "description": "operations behind the leader"},
        "active_ms": {"type": "integer", "nullable": True,
                      "description": "milliseconds since the leader last heard from it; null for the leader"},
    },
}
STREAM_CLUSTER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "replicas": {"type": "integer", "description": "configured replicas"},
        "leader": {"type": "string", "nullable": True},
        "peers": {"type": "array", "items": {"$ref": "#/components/schemas/Replica"},
                  "description": "the leader first, then the other replicas by name"},
        "replicas_current": {"type": "integer", "description": "replicas up to date, the leader included"},
        "max_lag": {"type": "integer"},
        "quorum": {"type": "boolean", "description": "more than half of the replicas are current"},
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"],
                   "description": "degraded: a replica is not current but the stream has a quorum; "
                                  "unhealthy: no leader or no quorum"},
        "reason": {"type": "string", "nullable": True},
    },
}
CLUSTER = {
    "type": "object",
    "nullable": True,
    "description": "The NATS cluster as this node sees it (null when the server is not clustered): from the "
                   "monitoring port's /varz, /jsz (meta_cluster) and /routez and the stream infos of the same "
                   "snapshot. While the snapshot is stale, the node part is read live and streams is empty.",
    "properties": {
        "name": {"type": "string", "nullable": True},
        "this_node": {"type": "string", "nullable": True},
        "size": {"type": "integer", "nullable": True, "description": "nodes of the JetStream meta group"},
        "meta_leader": {"type": "string", "nullable": True, "description": "null during an election or without quorum"},
        "meta_peers": {"type": "array", "items": {"$ref": "#/components/schemas/Replica"},
                       "description": "reported by nats-server on the meta leader only"},
        "peers_seen": {"type": "integer", "description": "distinct servers this node has a route to"},
        "peers": {"type": "array", "items": {"type": "object", "properties": {
            "server_id": {"type": "string"}, "address": {"type": "string"},
            "configured": {"type": "boolean"}, "rtt": {"type": "string", "nullable": True},
            "uptime": {"type": "string", "nullable": True}}}},
        "streams": {"type": "array", "items": {"$ref": "#/components/schemas/StreamCluster"}},
    },
}
SUPERVISION = {
    "type": "object",
    "description": "The supervisor's record of the nats-server child (supervised mode only)",
    "properties": {
        "recent_crashes": {"type": "integer", "description": "unexpected exits and hang restarts within crash_window_s"},
        "crash_window_s": {"type": "integer"},
        "crash_looping": {"type": "boolean", "description": "at least nats.restart.crash_loop_after recent crashes"},
        "hang_restarts": {"type": "integer", "description": "children killed because JetStream did not answer for nats.hang_timeout"},
        "jetstream_answering": {"type": "boolean", "description": "the latest /jsz probe (every second) was answered"},
        "jetstream_last_answer": {"type": "string", "format": "date-time", "nullable": True},
        "jetstream_error": {"type": "string", "nullable": True},
    },
}
CHECK = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
        "detail": {"type": "object"},
    },
}
HEALTH = {
    "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
    "checks": {
        "type": "object",
        "description": "nats_server (supervised: unhealthy when down, degraded while crash-looping), nats_client, "
                       "jetstream (unhealthy while the child's JetStream does not answer the probe or the snapshot "
                       "is stale), streams, router, consumers, collectors (degraded when one is stale), cluster (when "
                       "clustered: unhealthy without a meta leader, with a stream without leader or quorum, a "
                       "configured stream not listed, or a duplicate server name; degraded when a replica or meta "
                       "peer is not current or fewer routes than nodes; detail.reasons lists why)",
        "additionalProperties": {"$ref": "#/components/schemas/Check"},
    },
    "reasons": {"type": "array", "items": {"type": "string"},
                "description": "why the broker is degraded, each prefixed by its check"},
}


def ok(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}}


def ok_snapshot(description, data=None):
    """A success whose data carries `snapshot` (and the given data properties)."""
    properties = {"snapshot": {"$ref": "#/components/schemas/Snapshot"}, **(data or {})}
    schema = {"allOf": [{"$ref": "#/components/schemas/Success"}, {
        "type": "object", "properties": {"data": {
            "type": "object", "required": ["snapshot"], "properties": properties}}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def err_snapshot(description):
    """An error whose data carries `snapshot`."""
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"}, {
        "type": "object", "properties": {"data": {
            "type": "object", "properties": {"snapshot": {"$ref": "#/components/schemas/Snapshot"}}}}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def err(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def body(schema):
    return {"required": True, "content": {"application/json": {"schema": schema}}}


NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
AUTH = {"401": err("UNAUTHORIZED: api_token is set and the bearer token is missing or wrong")}
NATS_DOWN = {"503": err("NATS_CONNECTION_ERROR: NATS is not connected or did not answer in time")}
PUBLISH_ERRORS = {
    "404": err("STREAM_NOT_FOUND: persist: true and no stream captures the subject"),
    "503": err("STREAM_UNAVAILABLE (the stream did not acknowledge: no leader, being re-created, no ack in time; "
               "retry, with the same msg_id) or NATS_CONNECTION_ERROR; always with Retry-After"),
    "507": err("STORAGE_FULL: the stream or the server's store has no room (stream and limit in the message)"),
}

LISTING = {
    "count": {"type": "integer"},
    "streams": {"type": "array", "items": {"type": "object"}},
    "truncated": {"type": "boolean", "description": "more streams exist than the snapshot keeps (4096)"},
}
LISTING_STALE = err_snapshot("NATS_CONNECTION_ERROR: NATS is not connected or the snapshot is stale; "
                             "data.snapshot says why")

# (path, method) -> operation
OPS = {
    ("/health", "get"): {"summary": "Liveness", "responses": {"200": ok("alive")}},
    ("/ready", "get"): {"summary": "Readiness: NATS connected, its JetStream answering, configured streams and "
                                   "durable consumers ensured, streams writable, routes consuming",
                        "responses": {"200": ok("ready"),
                                      "503": err("NATS_CONNECTION_ERROR with failing components in data.components "
                                                 "(nats_server, jetstream, nats_client, streams, stream:NAME, route:NAME, service, …)")}},
    ("/metrics", "get"): {"summary": "Prometheus metrics (text format 0.0.4)",
                          "responses": {"200": {"description": "text/plain; version=0.0.4"}}},
    ("/api/v1/openapi.json", "get"): {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 JSON"}}},
    ("/api/v1/status", "get"): {
        "summary": "Service status: uptime, version, NATS, streams, message_stats, collectors; stream and "
                   "server figures from the background snapshot, dated by data.snapshot",
        "responses": {"200": ok_snapshot("status", {"collectors": {"$ref": "#/components/schemas/Collectors"}})}},
    ("/api/v1/collectors", "get"): {
        "summary": "Data collectors heard from (heartbeats on health.collector.>), with the stale ones, "
                   "the subscription and the heartbeat counters",
        "responses": {"200": ok("collectors: count, instances, active, stale (names), subject, subscribed, "
                               "stale_after_sec, ttl_sec, max_instances, heartbeats {accepted, malformed, rejected}")}},
    ("/api/v1/nats/info", "get"): {
        "summary": "NATS server: pid, ports, restarts, supervision (live) and varz figures (snapshot)",
        "responses": {"200": ok_snapshot("server info", {
            "supervision": {"$ref": "#/components/schemas/Supervision"}})}},
    ("/api/v1/broker/status", "get"): {
        "summary": "Broker detail, configured streams and durable consumers with their health; the stream "
                   "total and the cluster section from the snapshot",
        "responses": {"200": ok_snapshot("broker status", {
            "cluster": {"$ref": "#/components/schemas/Cluster"},
            "nats": {"type": "object", "properties": {
                "supervision": {"$ref": "#/components/schemas/Supervision"}}}})}},
    ("/api/v1/broker/health", "get"): {
        "summary": "Per-component health checks (nats_server, nats_client, jetstream, streams, router, "
                   "consumers, collectors, cluster when clustered); healthy or degraded (200, the message and "
                   "data.reasons say why) or unhealthy (503)",
        "responses": {"200": ok_snapshot("healthy, or degraded (data.status, with data.reasons): a collector is "
                                         "stale or its heartbeat subscription is being made again, the nats-server "
                                         "child is crash-looping, a cluster replica or peer is not current", HEALTH),
                      "503": err_snapshot("SERVICE_UNAVAILABLE naming the unhealthy checks; data has checks and snapshot")}},
    ("/api/v1/streams", "get"): {
        "summary": "List streams (alias of GET /api/v1/broker/streams)",
        "responses": {"200": ok_snapshot("streams", LISTING), "503": LISTING_STALE}},
    ("/api/v1/broker/streams", "get"): {
        "summary": "List streams with state, from the snapshot (a change made through the API is in "
                   "the next answer)",
        "responses": {"200": ok_snapshot("streams", LISTING), "503": LISTING_STALE}},
    ("/api/v1/broker/streams", "post"): {
        "summary": "Create a stream (idempotent for an identical config)",
        "requestBody": body({**STREAM_BODY, "required": ["name", "subjects"]}),
        "responses": {"200": ok("created, or already there with the same config"),
                      "400": err("INVALID_STREAM_DATA naming the field"),
                      **AUTH,
                      "409": err("STREAM_CREATION_ERROR: same name with another config, or subjects overlap another stream"),
                      "413": err("PAYLOAD_TOO_LARGE"), **NATS_DOWN}},
    ("/api/v1/broker/streams/{name}", "get"): {
        "summary": "One stream with state, read live from JetStream", "parameters": NAME,
        "responses": {"200": ok("stream"), "400": err("INVALID_STREAM_DATA: bad name"),
                      "404": err("STREAM_NOT_FOUND"), **NATS_DOWN}},
    ("/api/v1/broker/streams/{name}", "put"): {
        "summary": "Update a stream: given fields replace the current ones", "parameters": NAME,
        "requestBody": body(STREAM_BODY),
        "responses": {"200": ok("updated"), "400": err("INVALID_STREAM_DATA"), **AUTH,
                      "404": err("STREAM_NOT_FOUND"), "409": err("STREAM_CREATION_ERROR: subjects overlap"),
                      "413": err("PAYLOAD_TOO_LARGE"), **NATS_DOWN}},
    ("/api/v1/broker/streams/{name}", "delete"): {
        "summary": "Delete a stream (streams from the config file are refused)", "parameters": NAME,
        "responses": {"200": ok("deleted; data is the stream as it was"), **AUTH,
                      "404": err("STREAM_NOT_FOUND"), "409": err("INVALID_PARAMETERS: defined in the config"),
                      **NATS_DOWN}},
    ("/api/v1/publish", "post"): {
        "summary": "Publish one message (alias of POST /api/v1/broker/publish)",
        "requestBody": body(PUBLISH_BODY),
        "responses": {"200": ok("published; data is a PublishResult"), "400": err("INVALID_MESSAGE_DATA"), **AUTH,
                      "413": err("PAYLOAD_TOO_LARGE"), **PUBLISH_ERRORS}},
    ("/api/v1/broker/publish", "post"): {
        "summary": "Publish one message; JetStream-acked when a stream captures the subject",
        "requestBody": body(PUBLISH_BODY),
        "responses": {"200": ok("published (stored and acked when a stream captures the subject); data is a PublishResult"),
                      "400": err("INVALID_MESSAGE_DATA"), **AUTH,
                      "413": err("PAYLOAD_TOO_LARGE"), **PUBLISH_ERRORS}},
    ("/api/v1/broker/publish/batch", "post"): {
        "summary": "Publish up to 1000 messages in order, with a result per entry",
        "requestBody": body(BATCH_BODY),
        "responses": {"200": ok("all published; data.results[i] is a PublishResult with index and status"),
                      "207": ok("some entries failed; data.results[i] has status, error_code, message, retryable"),
                      "400": err("INVALID_MESSAGE_DATA: the batch itself is malformed"), **AUTH,
                      "413": err("PAYLOAD_TOO_LARGE"), **NATS_DOWN}},
    ("/api/v1/routes", "get"): {
        "summary": "Compiled routes with source, outputs and live counters",
        "responses": {"200": ok("routes, table version, last reload")}},
    ("/api/v1/routes/{name}", "get"): {
        "summary": "One route with live counters", "parameters": NAME,
        "responses": {"200": ok("route"), "404": err("ROUTE_NOT_FOUND")}},
    ("/api/v1/routes/reload", "post"): {
        "summary": "Reload routes.d/ and transforms/; an invalid set leaves the running table in place",
        "responses": {"200": ok("reloaded: version, kept, started, stopped routes"), **AUTH,
                      "400": err("INVALID_ROUTES with every problem as file:line in data.problems")}},
    ("/api/v1/routes/test", "post"): {
        "summary": "Dry run of one message through the live table; publishes nothing",
        "requestBody": body({"type": "object", "required": ["subject", "message"], "properties": {
            "subject": {"type": "string"}, "message": {}, "headers": {"type": "object"}}}),
        "responses": {"200": ok("what each matching route would publish"),
                      "400": err("INVALID_MESSAGE_DATA"), **AUTH}},
    ("/api/v1/routes/{name}/tap", "get"): {
        "summary": "Watch a route at work: server-sent events of what it receives, publishes, "
                   "dead-letters, drops, filters or emits from state, rate-limited and bounded in time",
        "description": "Needs the API token when one is set (the events show payloads). The stream opens "
                       "with `event: open`, then one `event: <kind>` per event (kind: received, published, "
                       "emitted, dead_lettered, dropped, filtered, passed_through) whose data is "
                       "{kind, at_ms, subject, payload?, error?} (payloads cut after 4 KiB); `event: skipped` "
                       "with {skipped} every second while the rate leaves events out; a last `event: end` with "
                       "{skipped, sent, reason}. Tapping never slows the route: events beyond the rate are "
                       "counted as skipped, not waited for. `prism-broker tap ROUTE` prints the same.",
        "parameters": NAME + [
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
             "description": "events a second at most"},
            {"name": "seconds", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 600, "default": 60},
             "description": "how long the stream lasts"}],
        "responses": {"200": {"description": "the event stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      "400": err("INVALID_PARAMETERS: limit or seconds out of range"), **AUTH,
                      "404": err("ROUTE_NOT_FOUND")}},
}


def main():
    paths = {}
    for (path, method), op in OPS.items():
        op = dict(op)
        op.setdefault("responses", {})
        op["responses"].setdefault("404", err("NOT_FOUND")) if "{" in path else None
        paths.setdefault(path, {})[method] = op
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "prism-broker", "version": "0.1.0",
                 "description": "Message broker service of the MarketPrism platform. Every /api/v1 "
                                "response uses the envelope {status, message, data, timestamp} or "
                                "{status, error_code, message, data, timestamp}; unknown paths are 404 "
                                "NOT_FOUND and wrong methods 405 METHOD_NOT_ALLOWED."},
        "components": {
            "schemas": {"Success": ENVELOPE_OK, "Error": ENVELOPE_ERR, "PublishResult": PUBLISH_RESULT,
                        "Snapshot": SNAPSHOT, "Collector": COLLECTOR, "Collectors": COLLECTORS,
                        "Cluster": CLUSTER, "StreamCluster": STREAM_CLUSTER, "Replica": REPLICA,
                        "Supervision": SUPERVISION, "Check": CHECK},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "needed on mutating endpoints when service.api_token is set"}},
        },
        "paths": paths,
    }
    out = pathlib.Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
