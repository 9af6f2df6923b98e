//! `portico plugin new <name>`: a plugin crate that builds as generated, for
//! `wasm32-wasip2` (a component) and natively (its test uses the SDK's
//! `TestHost`).

use std::path::{Path, PathBuf};

/// Where the generated crate gets `portico-sdk` from.
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// A local checkout of `plugin-sdk/`.
    Path(PathBuf),
    /// A registry version requirement.
    Version(String),
}

/// The SDK beside this host's sources, when this binary was built from a
/// checkout that still exists.
pub fn default_sdk() -> Option<SdkSource> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    dir.join("Cargo.toml")
        .exists()
        .then(|| SdkSource::Path(dir.canonicalize().unwrap_or(dir)))
}

/// Generating the crate failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a plugin name.
    #[error(
        "plugin name {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter"
    )]
    BadName(String),
    /// The target directory exists and is not empty.
    #[error("{0} already exists and is not empty")]
    Exists(String),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Write the crate `name` into `dir` (created; must be empty if it exists).
/// Returns the files written.
pub fn generate(name: &str, dir: &Path, sdk: &SdkSource) -> Result<Vec<PathBuf>, ScaffoldError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ScaffoldError::Exists(dir.display().to_string()));
    }
    let sdk_dep = match sdk {
        SdkSource::Path(p) => format!("{{ path = {:?} }}", p.display().to_string()),
        SdkSource::Version(v) => format!("{v:?}"),
    };
    let ty = camel(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_dep)),
        ("src/lib.rs", lib_rs(name, &ty)),
        (".gitignore", "/target\n".to_owned()),
        ("README.md", readme(name)),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        let io = |source| ScaffoldError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &str, sdk_dep: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm component; rlib: the native tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
portico-sdk = {sdk_dep}

# Fast components: `cargo build --target wasm32-wasip2 --release`.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A workspace of its own, so it builds wherever it was generated.
[workspace]
"#
    )
}

fn lib_rs(name: &str, ty: &str) -> String {
    format!(
        r#"//! `{name}`: a Portico plugin. Events, each acked:
//!
//! - `hello`: acks `{{"ok": true, "greeting": "hello, <subject>"}}`.

use portico_sdk::prelude::*;

/// The plugin.
pub struct {ty};

impl Plugin for {ty} {{
    fn manifest() -> Manifest {{
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"))
            .description("Greets whoever says hello")
            .event(EventSpec::incoming("hello", "Greets the sender"))
    }}

    fn on_event(conn: &Connection, event: &Event) -> Result<Actions, Rejection> {{
        match event.name() {{
            "hello" => {{
                let who = conn.subject().unwrap_or("stranger");
                let greeting = format!("hello, {{who}}");
                Ok(vec![Action::ack(&json!({{ "ok": true, "greeting": greeting }}))])
            }}
            other => Err(Rejection::new(
                "unknown_event",
                format!("{name} has no event `{{other}}`"),
            )),
        }}
    }}
}}

portico_sdk::export!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use portico_sdk::testing::TestHost;

    #[test]
    fn greets_the_sender() {{
        let host = TestHost::<{ty}>::new();
        let alice = host.user("alice");
        assert_eq!(
            host.ack(&alice, "hello", ()),
            json!({{ "ok": true, "greeting": "hello, alice" }})
        );
        assert_eq!(
            host.ack(&host.anonymous(), "hello", ())["greeting"],
            json!("hello, stranger")
        );
    }}

    #[test]
    fn unknown_events_are_refused() {{
        let host = TestHost::<{ty}>::new();
        let err = host.event(&host.user("bob"), "dance", ()).unwrap_err();
        assert_eq!(err.code(), "unknown_event");
    }}
}}
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Portico plugin.

```sh
cargo test                                   # native tests
cargo build --target wasm32-wasip2 --release # the component
portico plugin push target/wasm32-wasip2/release/{wasm}.wasm --name {name}
```
"#,
        wasm = name.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_existing_dirs_are_checked() {
        let dir = std::env::temp_dir().join(format!("portico-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sdk = SdkSource::Version("0.1".into());
        assert!(matches!(
            generate("Bad", &dir, &sdk),
            Err(ScaffoldError::BadName(_))
        ));
        let files = generate("my-plugin", &dir, &sdk).unwrap();
        assert_eq!(files.len(), 4);
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyPlugin;"));
        assert!(matches!(
            generate("my-plugin", &dir, &sdk),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
