//! Benchmark peer: Portico's `echo` and `chat` logic as plain Rust socketioxide handlers, no
//! Wasm. It is the ceiling the plugin layer is measured against, so it uses the same
//! socketioxide settings, the same HS256 handshake check and the same axum server as Portico.
//!
//! Run with `portico-native-peer --secret S --listen 127.0.0.1:0 [--runtime current]`; prints
//! `listening on http://ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Data, Event, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::Socket;

const VERSION: &str = "0.1.0";
const MAX_ROOM: usize = 128;
const MAX_NICK: usize = 64;
const MAX_TEXT: usize = 2000;

#[derive(Parser)]
#[command(about = "Native socketioxide peer for Portico's benchmarks")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// HS256 secret tokens are verified with.
    #[arg(long, env = "BENCH_SECRET", hide_env_values = true)]
    secret: String,
    /// Tokio runtime flavour (Portico runs the multi-thread one).
    #[arg(long, default_value = "multi")]
    runtime: Runtime,
    /// Packets queued per socket before new ones are dropped (Portico: `socketio.max_buffer_size`).
    #[arg(long, default_value_t = 128)]
    max_buffer_size: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Runtime {
    Multi,
    Current,
}

struct Auth {
    key: DecodingKey,
    validation: Validation,
}

impl Auth {
    /// The checks Portico's verifier makes: HS256 only, `exp` required, 30 s leeway.
    fn new(secret: &str) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.required_spec_claims.insert("exp".into());
        Ok(Self {
            key: DecodingKey::from_secret(secret.as_bytes())?,
            validation,
        })
    }

    fn verify(&self, auth: Option<Value>) -> Result<serde_json::Map<String, Value>, String> {
        let token = auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .ok_or("unauthorized: no token")?;
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| format!("unauthorized: {e}"))
    }
}

/// The verified subject of a chat connection, and its nickname.
#[derive(Clone)]
struct Member {
    subject: String,
    nick: Option<String>,
}

#[derive(Deserialize)]
struct RoomArgs {
    room: String,
}

#[derive(Deserialize)]
struct NickArgs {
    name: String,
}

#[derive(Deserialize)]
struct MessageArgs {
    room: String,
    text: String,
}

fn ok() -> Value {
    json!({ "ok": true, "v": VERSION })
}

fn refuse(code: &str, message: String) -> Value {
    json!({ "ok": false, "code": code, "message": message })
}

fn check_len(what: &str, value: &str, max: usize) -> Result<(), Value> {
    if value.is_empty() {
        return Err(refuse("bad_request", format!("{what} is empty")));
    }
    let len = value.chars().count();
    if len > max {
        return Err(refuse(
            "bad_request",
            format!("{what} is {len} characters long, the limit is {max}"),
        ));
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Value> {
    serde_json::from_value(v).map_err(|e| refuse("bad_request", e.to_string()))
}

fn mount_echo(io: &SocketIo, auth: Arc<Auth>) {
    // Handlers are registered in the middleware, before the connect ack, as Portico does.
    let middleware = move |socket: SocketRef, TryData(a): TryData<Value>| {
        let auth = auth.clone();
        async move {
            auth.verify(a.ok())?;
            socket.on_fallback(
                async |socket: SocketRef,
                       Event(event): Event,
                       Data(v): Data<Value>,
                       AckIfAsked(ack)| {
                    // An acked `emit-and-ack` is emitted back, then acked.
                    let _ = match ack {
                        Some(ack) if event == "emit-and-ack" => {
                            socket.emit(&event, &v).and_then(|()| ack.send(&v))
                        }
                        Some(ack) => ack.send(&v),
                        None => socket.emit(&event, &v),
                    };
                },
            );
            Ok::<(), String>(())
        }
    };
    io.ns("/echo", (async |_: SocketRef| {}).with(middleware));
}

/// The ack sender when the client asked for an ack (the packet had an id), else `None`.
struct AckIfAsked(Option<AckSender>);

impl FromMessageParts<LocalAdapter> for AckIfAsked {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ack = match ack_id {
            Some(_) => AckSender::from_message_parts(s, v, ack_id).ok(),
            None => None,
        };
        Ok(Self(ack))
    }
}

fn mount_chat(io: &SocketIo, auth: Arc<Auth>) {
    let middleware = move |socket: SocketRef, TryData(a): TryData<Value>| {
        let auth = auth.clone();
        async move {
            let claims = auth.verify(a.ok())?;
            let subject = claims
                .get("sub")
                .and_then(Value::as_str)
                .ok_or("unauthorized: chat needs a signed-in user")?;
            socket.extensions.insert(Member {
                subject: subject.to_owned(),
                nick: None,
            });
            register_chat(&socket);
            Ok::<(), String>(())
        }
    };
    io.ns("/chat", (async |_: SocketRef| {}).with(middleware));
}

fn register_chat(socket: &SocketRef) {
    socket.on(
        "join",
        async |socket: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let reply = parse::<RoomArgs>(v).and_then(|RoomArgs { room }| {
                check_len("room", &room, MAX_ROOM)?;
                socket.join(room);
                Ok(ok())
            });
            let _ = ack.send(&reply.unwrap_or_else(|e| e));
        },
    );
    socket.on(
        "leave",
        async |socket: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let reply = parse::<RoomArgs>(v).and_then(|RoomArgs { room }| {
                check_len("room", &room, MAX_ROOM)?;
                socket.leave(room);
                Ok(ok())
            });
            let _ = ack.send(&reply.unwrap_or_else(|e| e));
        },
    );
    socket.on(
        "nick",
        async |socket: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let reply = parse::<NickArgs>(v).and_then(|NickArgs { name }| {
                check_len("name", &name, MAX_NICK)?;
                if let Some(mut m) = socket.extensions.get::<Member>() {
                    m.nick = Some(name);
                    socket.extensions.insert(m);
                }
                Ok(ok())
            });
            let _ = ack.send(&reply.unwrap_or_else(|e| e));
        },
    );
    socket.on(
        "message",
        async |socket: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let reply = match parse::<MessageArgs>(v) {
                Ok(MessageArgs { room, text }) => message(&socket, room, text).await,
                Err(e) => e,
            };
            let _ = ack.send(&reply);
        },
    );
}

async fn message(socket: &SocketRef, room: String, text: String) -> Value {
    if let Err(e) = check_len("room", &room, MAX_ROOM).and(check_len("text", &text, MAX_TEXT)) {
        return e;
    }
    if !socket.rooms().iter().any(|r| *r == room) {
        return refuse(
            "not_member",
            format!("join room `{room}` before sending to it"),
        );
    }
    let from = socket
        .extensions
        .get::<Member>()
        .map(|m| m.nick.unwrap_or(m.subject))
        .unwrap_or_default();
    let msg = json!({ "from": from, "room": room, "text": text });
    match socket.to(room).emit("message", &msg).await {
        Ok(()) => ok(),
        Err(e) => refuse("internal", e.to_string()),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let auth = Arc::new(Auth::new(&args.secret)?);
    // Portico's defaults (`[socketio]` in its config).
    let (layer, io) = SocketIo::builder()
        .max_payload(100_000)
        .max_buffer_size(args.max_buffer_size)
        .ping_interval(Duration::from_millis(25_000))
        .ping_timeout(Duration::from_millis(20_000))
        .connect_timeout(Duration::from_millis(45_000))
        .build_layer();
    mount_echo(&io, auth.clone());
    mount_chat(&io, auth);
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(async || "ok"))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .context("serving")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = match args.runtime {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread(),
        Runtime::Current => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build()?.block_on(serve(args))
}
