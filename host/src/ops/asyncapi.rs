//! The AsyncAPI 3.0 document of what this node serves, built from the loaded
//! plugins' manifests on every request (so it follows hot loads).
//!
//! Each plugin is a channel at its Socket.IO namespace. Events clients send
//! are `receive` operations of the server; events it emits are `send`
//! operations. The SDK marks a plugin's outgoing events with
//! `"x-portico-direction": "out"` in their schema.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::plugins::{EventSpec, PluginSlot};
use crate::state::AppState;

pub async fn document(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.config.listen.to_string(), str::to_owned);
    Json(build(&host, &state.registry.list()))
}

fn build(host: &str, slots: &[std::sync::Arc<PluginSlot>]) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    for slot in slots {
        let version = slot.active();
        let manifest = &version.manifest;
        let mut messages = Map::new();
        for event in &manifest.events {
            let key = message_key(&event.name);
            messages.insert(key.clone(), message(event));
            let (action, verb) = if is_outgoing(event) {
                ("send", "send")
            } else {
                ("receive", "receive")
            };
            operations.insert(
                format!("{}.{verb}.{key}", slot.name),
                json!({
                    "action": action,
                    "channel": { "$ref": format!("#/channels/{}", slot.name) },
                    "summary": event.description,
                    "messages": [{ "$ref": format!("#/channels/{}/messages/{key}", slot.name) }],
                }),
            );
        }
        channels.insert(
            slot.name.clone(),
            json!({
                "address": slot.mount,
                "title": format!("{} {}", manifest.name, manifest.version),
                "description": format!("{} Socket.IO namespace `{}`; SSE stream `/sse/{}`.", manifest.description, slot.mount, slot.name),
                "messages": messages,
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Portico",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Socket.IO namespaces and SSE streams served by the loaded plugins.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "socketio": { "host": host, "protocol": "ws", "pathname": "/socket.io", "description": "Socket.IO v5 (Engine.IO v4) over WebSocket or long-polling" },
            "sse": { "host": host, "protocol": "http", "pathname": "/sse", "description": "Server-Sent Events" },
        },
        "channels": channels,
        "operations": operations,
    })
}

/// Message keys must match `^[\w\d.\-_]+$`.
fn message_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn schema(event: &EventSpec) -> Option<Value> {
    event
        .schema_json
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
}

fn is_outgoing(event: &EventSpec) -> bool {
    schema(event)
        .is_some_and(|s| s.get("x-portico-direction").and_then(Value::as_str) == Some("out"))
}

fn message(event: &EventSpec) -> Value {
    let mut m = json!({ "name": event.name, "summary": event.description });
    if let Some(mut payload) = schema(event) {
        if let Some(obj) = payload.as_object_mut() {
            obj.remove("x-portico-direction");
        }
        m["payload"] = payload;
    }
    m
}
