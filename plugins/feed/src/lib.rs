//! `feed`: news, tickers and personal notifications, read over SSE or Socket.IO.
//!
//! Channels and who may read them (SSE `on-subscribe`, Socket.IO `follow`):
//!
//! - `news` and `ticker:<symbol>`: everyone, signed in or not (when the host's auth mode lets
//!   anonymous clients in);
//! - `user:<subject>`: only the signed-in user `<subject>` (`forbidden` otherwise);
//! - anything else: `unknown_channel`.
//!
//! Events, acked with `{"ok": true, ...}` or refused with `{"ok": false, "code", "message"}`:
//!
//! - `follow {channel}` / `unfollow {channel}`: join or leave a channel's Socket.IO room;
//! - `post {channel, title, body?}`: publish `post {n, title, body, by, at}` to the channel
//!   (sender included), where `n` counts the channel's posts; needs a token whose `role` claim is
//!   config `editor_role` (default `editor`). Acks `{"ok": true, "n": n}`.
//!
//! Backends publish to the same channels with the host's publish API. Each event is a typed
//! handler: its payload and ack types give the JSON Schemas in the manifest (and AsyncAPI).

use portico_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The feed plugin.
pub struct Feed;

/// Default for config `editor_role`.
pub const DEFAULT_EDITOR_ROLE: &str = "editor";
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 4000;

/// `follow`, `unfollow`.
#[derive(Deserialize, JsonSchema)]
struct ChannelArgs {
    /// `news`, `ticker:<symbol>` or `user:<subject>`.
    channel: String,
}

/// `post`.
#[derive(Deserialize, JsonSchema)]
struct PostArgs {
    channel: String,
    #[schemars(length(min = 1, max = 200))]
    title: String,
    #[serde(default)]
    #[schemars(length(max = 4000))]
    body: String,
}

/// The ack of `follow` and `unfollow`.
#[derive(Serialize, JsonSchema)]
struct Done {
    ok: bool,
}

/// The ack of `post`.
#[derive(Serialize, JsonSchema)]
struct Posted {
    ok: bool,
    /// The post's number on its channel.
    n: i64,
}

/// What the channel's readers receive.
#[derive(Serialize, JsonSchema)]
struct Post {
    n: i64,
    title: String,
    body: String,
    by: String,
    /// Unix time in milliseconds.
    at: u64,
}

const DONE: Done = Done { ok: true };

/// The kinds of channel this feed has.
enum Kind<'a> {
    /// `news`, `ticker:<symbol>`: readable by everyone.
    Public,
    /// `user:<subject>`: readable by that user only.
    User(&'a str),
}

fn kind(channel: &str) -> Result<Kind<'_>, Rejection> {
    if channel == "news" {
        return Ok(Kind::Public);
    }
    if let Some(symbol) = channel.strip_prefix("ticker:") {
        let ok = (1..=12).contains(&symbol.len())
            && symbol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        return if ok {
            Ok(Kind::Public)
        } else {
            Err(Rejection::new(
                "unknown_channel",
                "ticker symbols are 1-12 letters, digits or dots",
            ))
        };
    }
    match channel.strip_prefix("user:") {
        Some(owner) if !owner.is_empty() => Ok(Kind::User(owner)),
        _ => Err(Rejection::new(
            "unknown_channel",
            format!("no channel `{channel}`: use news, ticker:<symbol> or user:<you>"),
        )),
    }
}

/// Whether `conn` may read `channel`.
fn may_read(conn: &Connection, channel: &str) -> Result<(), Rejection> {
    match (kind(channel)?, conn.subject()) {
        (Kind::Public, _) => Ok(()),
        (Kind::User(owner), Some(me)) if me == owner => Ok(()),
        (Kind::User(_), Some(_)) => Err(Rejection::new(
            "forbidden",
            "only its owner may read a user channel",
        )),
        (Kind::User(_), None) => Err(Rejection::new(
            "unauthorized",
            "sign in to read your notifications",
        )),
    }
}

fn may_post(conn: &Connection) -> Result<&str, Rejection> {
    let role = config::get_or("editor_role", DEFAULT_EDITOR_ROLE);
    let principal = conn
        .principal()
        .ok_or_else(|| Rejection::new("unauthorized", "sign in to post"))?;
    if principal
        .claim("role")
        .and_then(|r| r.as_str().map(str::to_owned))
        != Some(role.clone())
    {
        return Err(Rejection::new(
            "forbidden",
            format!("posting needs the role `{role}`"),
        ));
    }
    Ok(conn.subject().unwrap_or("editor"))
}

fn check_len(what: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(Rejection::bad_request(format!(
            "{what} must be {min}-{max} characters, not {len}"
        )));
    }
    Ok(())
}

fn post(conn: &Connection, args: PostArgs) -> Result<Reply<Posted>, Rejection> {
    let by = may_post(conn)?.to_owned();
    let PostArgs {
        channel,
        title,
        body,
    } = args;
    // Editors post to channels readers can name; the owner check is for readers.
    if channel != "news" && !channel.starts_with("ticker:") && !channel.starts_with("user:") {
        may_read(conn, &channel)?;
    }
    check_len("title", &title, 1, MAX_TITLE)?;
    check_len("body", &body, 0, MAX_BODY)?;
    let n = kv::incr(&format!("posts:{channel}"), 1)?;
    let at = time::now_ms();
    let post = Post {
        n,
        title,
        body,
        by,
        at,
    };
    Ok(Reply::ack(Posted { ok: true, n })
        .with(Action::publish(&channel, "post", &post).include_sender()))
}

impl Plugin for Feed {
    fn manifest() -> Manifest {
        Manifest::new("feed", env!("CARGO_PKG_VERSION"))
            .description("News, tickers and personal notifications")
    }

    fn router() -> Router {
        Router::new()
            .on(
                "follow",
                "Receive a channel over Socket.IO",
                |conn, a: ChannelArgs| {
                    may_read(conn, &a.channel)?;
                    Ok(Reply::ack(DONE).with(Action::join(a.channel)))
                },
            )
            .on(
                "unfollow",
                "Stop receiving a channel",
                |_conn, a: ChannelArgs| Ok(Reply::ack(DONE).with(Action::leave(a.channel))),
            )
            .on("post", "Publish a post (editors only)", post)
            .emits::<Post>("post", "A post on a channel")
    }

    fn on_subscribe(conn: &Connection, channel: &str) -> Result<(), Rejection> {
        may_read(conn, channel)
    }
}

portico_sdk::export!(Feed);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{START_MS, TestHost};

    fn editor(host: &TestHost<Feed>) -> Connection {
        host.user_with_claims("ed", json!({ "role": "editor" }))
    }

    #[test]
    fn public_channels_are_open_to_everyone() {
        let host = TestHost::<Feed>::new();
        let anon = host.anonymous();
        assert_eq!(host.connect(&anon), Ok(vec![]));
        assert_eq!(host.subscribe(&anon, "news"), Ok(()));
        assert_eq!(host.subscribe(&anon, "ticker:ACME"), Ok(()));
        assert_eq!(
            host.subscribe(&anon, "ticker:").unwrap_err().code(),
            "unknown_channel"
        );
        assert_eq!(
            host.subscribe(&anon, "ticker:a b").unwrap_err().code(),
            "unknown_channel"
        );
        assert_eq!(
            host.subscribe(&anon, "secret").unwrap_err().code(),
            "unknown_channel"
        );
    }

    #[test]
    fn user_channels_belong_to_their_owner() {
        let host = TestHost::<Feed>::new();
        let alice = host.user("alice");
        assert_eq!(host.subscribe(&alice, "user:alice"), Ok(()));
        assert_eq!(
            host.subscribe(&alice, "user:bob").unwrap_err().code(),
            "forbidden"
        );
        let anon = host.anonymous();
        assert_eq!(
            host.subscribe(&anon, "user:alice").unwrap_err().code(),
            "unauthorized"
        );
        // Following over Socket.IO applies the same rule.
        assert_eq!(
            host.ack(&alice, "follow", json!({ "channel": "user:bob" }))["code"],
            json!("forbidden")
        );
        assert_eq!(
            host.event(&alice, "follow", json!({ "channel": "user:alice" })),
            Ok(vec![
                Action::join("user:alice"),
                Action::ack(&json!({ "ok": true }))
            ])
        );
    }

    #[test]
    fn editors_post_numbered_posts() {
        let host = TestHost::<Feed>::new();
        let ed = editor(&host);
        let actions = host
            .event(&ed, "post", json!({ "channel": "news", "title": "Hello" }))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::publish(
                    "news",
                    "post",
                    &json!({ "n": 1, "title": "Hello", "body": "", "by": "ed", "at": START_MS })
                )
                .include_sender(),
                Action::ack(&json!({ "ok": true, "n": 1 })),
            ]
        );
        let second = host.ack(
            &ed,
            "post",
            json!({ "channel": "news", "title": "Again", "body": "b" }),
        );
        assert_eq!(second, json!({ "ok": true, "n": 2 }));
        assert_eq!(
            host.ack(&ed, "post", json!({ "channel": "ticker:X", "title": "t" }))["n"],
            json!(1)
        );
    }

    #[test]
    fn only_editors_post_and_bad_posts_are_refused() {
        let host = TestHost::<Feed>::new();
        let post = json!({ "channel": "news", "title": "x" });
        assert_eq!(
            host.ack(&host.anonymous(), "post", post.clone())["code"],
            json!("unauthorized")
        );
        assert_eq!(
            host.ack(&host.user("alice"), "post", post.clone())["code"],
            json!("forbidden")
        );
        host.set_config("editor_role", "chief");
        assert_eq!(
            host.ack(&editor(&host), "post", post.clone())["code"],
            json!("forbidden")
        );
        let chief = host.user_with_claims("c", json!({ "role": "chief" }));
        assert_eq!(host.ack(&chief, "post", post)["ok"], json!(true));
        for bad in [
            json!({ "channel": "news" }),
            json!({ "channel": "news", "title": "" }),
            json!({ "channel": "news", "title": "x".repeat(MAX_TITLE + 1) }),
            json!({ "title": "x" }),
        ] {
            assert_eq!(
                host.ack(&chief, "post", bad.clone())["code"],
                json!("bad_request"),
                "{bad}"
            );
        }
        assert_eq!(
            host.ack(&chief, "post", json!({ "channel": "nope", "title": "x" }))["code"],
            json!("unknown_channel")
        );
        assert_eq!(
            host.ack(&chief, "dance", json!({}))["code"],
            json!("unknown_event")
        );
    }
}
