//! `GET /openapi.json`: an OpenAPI 3.1 document of this server, made from
//! the table below (one row per operation, beside the router in lib.rs; a
//! test checks that every row is routed).

use axum::Json;
use serde_json::{Map, Value, json};

/// A parameter: (name, where: path/query/header, required).
pub type Parameter = (&'static str, &'static str, bool);

/// (method, path, summary, needs the secret key, parameters).
pub type Operation = (&'static str, &'static str, &'static str, bool, &'static [Parameter]);

pub const OPERATIONS: &[Operation] = &[
    ("get", "/providers", "Providers of providers.yaml", true, &[("search", "query", false)]),
    ("get", "/providers/{provider}", "One provider", true, &[("provider", "path", true)]),
    ("get", "/integrations", "Providers a component serves here", true, &[]),
    ("get", "/integrations/{provider}", "One integration", true, &[("provider", "path", true)]),
    (
        "get",
        "/integrations/{provider}/functions",
        "The integration's syncs and actions, as Nango lists functions",
        true,
        &[
            ("provider", "path", true),
            ("type", "query", false),
            ("search", "query", false),
            ("page", "query", false),
            ("limit", "query", false),
        ],
    ),
    (
        "get",
        "/integrations/{provider}/functions/{name}",
        "One sync or action of the integration",
        true,
        &[("provider", "path", true), ("name", "path", true), ("type", "query", false)],
    ),
    ("get", "/scripts/config", "Each integration's syncs and actions, as Nango's scripts config", true, &[]),
    (
        "get",
        "/connections",
        "Saved connections",
        true,
        &[
            ("connectionId", "query", false),
            ("integrationId", "query", false),
            ("endUserId", "query", false),
            ("search", "query", false),
        ],
    ),
    ("post", "/connections", "Import a connection (checked with the provider first)", true, &[]),
    (
        "get",
        "/connections/{connectionId}",
        "One connection (credentials never included)",
        true,
        &[("connectionId", "path", true), ("provider_config_key", "query", true)],
    ),
    (
        "delete",
        "/connections/{connectionId}",
        "Delete a connection with its records and schedules",
        true,
        &[("connectionId", "path", true), ("provider_config_key", "query", true)],
    ),
    (
        "patch",
        "/connections/{connectionId}",
        "Set who a connection is for (end_user) and its tags",
        true,
        &[("connectionId", "path", true), ("provider_config_key", "query", true)],
    ),
    (
        "post",
        "/connections/metadata",
        "Set connections' metadata (body: connection_id, provider_config_key, metadata)",
        true,
        &[],
    ),
    ("patch", "/connections/metadata", "Merge into connections' metadata", true, &[]),
    (
        "get",
        "/records",
        "Stored records with _nango_metadata",
        true,
        &[
            ("Connection-Id", "header", true),
            ("Provider-Config-Key", "header", true),
            ("model", "query", true),
            ("cursor", "query", false),
            ("limit", "query", false),
            ("modified_after", "query", false),
            ("filter", "query", false),
            ("ids", "query", false),
        ],
    ),
    ("patch", "/records/prune", "Empty record payloads up to a cursor (pruneRecords)", true, &[]),
    ("post", "/sync/trigger", "Run syncs now (sync_mode full_refresh: from the beginning)", true, &[]),
    ("post", "/sync/start", "Start sync schedules (runs now, then every frequency)", true, &[]),
    ("post", "/sync/pause", "Pause sync schedules", true, &[]),
    (
        "get",
        "/sync/status",
        "Sync status, schedule and record counts",
        true,
        &[("syncs", "query", true), ("provider_config_key", "query", true), ("connection_id", "query", false)],
    ),
    (
        "put",
        "/sync/update-connection-frequency",
        "Set a sync's frequency for one connection (null: the default)",
        true,
        &[],
    ),
    (
        "post",
        "/action/trigger",
        "Run an action",
        true,
        &[("Connection-Id", "header", true), ("Provider-Config-Key", "header", true)],
    ),
    ("get", "/action/{id}", "The result of an async action (X-Async: true)", true, &[("id", "path", true)]),
    (
        "get",
        "/proxy/{path}",
        "Proxy a request to the provider (also POST, PUT, PATCH, DELETE); Base-Url-Override is refused",
        true,
        &[("path", "path", true), ("Connection-Id", "header", true), ("Provider-Config-Key", "header", true)],
    ),
    ("post", "/connect/sessions", "A Connect session for an end user", true, &[]),
    (
        "post",
        "/connect/sessions/reconnect",
        "A Connect link that gives an existing connection a new credential",
        true,
        &[],
    ),
    (
        "get",
        "/governance/connections/{id}/tools",
        "A connection's tools: status, toolsets, default classification",
        true,
        &[("id", "path", true)],
    ),
    (
        "patch",
        "/governance/connections/{id}/tools",
        "Approve, deny or reset tools on one connection; set its default classification",
        true,
        &[("id", "path", true)],
    ),
    ("get", "/governance/toolsets", "Toolsets", true, &[]),
    ("post", "/governance/toolsets", "Create a toolset", true, &[]),
    ("patch", "/governance/toolsets/{name}", "Add or remove tools of a toolset", true, &[("name", "path", true)]),
    ("delete", "/governance/toolsets/{name}", "Delete a toolset no profile binds", true, &[("name", "path", true)]),
    ("get", "/governance/access-profiles", "Access profiles", true, &[]),
    ("post", "/governance/access-profiles", "Create an access profile", true, &[]),
    (
        "patch",
        "/governance/access-profiles/{name}",
        "Grant or revoke toolsets (on all or one connection), add or remove users",
        true,
        &[("name", "path", true)],
    ),
    ("delete", "/governance/access-profiles/{name}", "Delete an access profile", true, &[("name", "path", true)]),
    ("get", "/governance/users", "MCP users (never their tokens)", true, &[]),
    ("post", "/governance/users", "Create an MCP user; the answer has their token, once", true, &[]),
    ("delete", "/governance/users/{name}", "Remove an MCP user", true, &[("name", "path", true)]),
    ("post", "/governance/users/{name}/token", "A new token for a user", true, &[("name", "path", true)]),
    ("get", "/governance/audit", "The newest tool calls", true, &[("limit", "query", false)]),
    (
        "post",
        "/mcp/{connection}",
        "MCP (streamable HTTP; also GET and DELETE, and /mcp for a user's only connection), by a user's token",
        false,
        &[("connection", "path", true)],
    ),
    (
        "get",
        "/sync/runs",
        "Run history, newest first",
        true,
        &[("connection_id", "query", false), ("limit", "query", false)],
    ),
    ("get", "/metrics", "Prometheus metrics", true, &[]),
    ("get", "/health/live", "The process answers", false, &[]),
    ("get", "/health/ready", "The store answers (503 while it is away)", false, &[]),
    ("get", "/connect", "The Connect page", false, &[("session_token", "query", true)]),
    (
        "post",
        "/connect/api/connections",
        "Save a connection from the Connect page (checked with the provider first)",
        false,
        &[],
    ),
    (
        "get",
        "/connect/oauth/start",
        "Start an OAuth connection from the Connect page",
        false,
        &[("session_token", "query", true), ("provider", "query", true)],
    ),
    ("get", "/oauth/callback", "OAuth redirect target", false, &[("code", "query", false), ("state", "query", false)]),
];

pub async fn document() -> Json<Value> {
    let mut paths = Map::new();
    for (method, path, summary, secured, parameters) in OPERATIONS {
        let operation = json!({
            "summary": summary,
            "security": if *secured { json!([{ "secretKey": [] }]) } else { json!([]) },
            "parameters": parameters.iter().map(|(name, place, required)| json!({
                "name": name, "in": place, "required": required, "schema": { "type": "string" }
            })).collect::<Vec<_>>(),
            "responses": {
                "200": { "description": "OK" },
                "default": { "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        let entry = paths.entry(path.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(method.to_string(), operation);
        }
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "terapi", "version": env!("CARGO_PKG_VERSION"), "description": "Nango's public API, served by terapi" },
        "paths": paths,
        "components": {
            "securitySchemes": { "secretKey": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object", "required": ["code"], "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } }
        }
    }))
}
