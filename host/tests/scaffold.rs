//! `portico plugin new` generates a crate that builds as generated: its native
//! tests pass and it builds to a wasm component that a node accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo(dir: &Path, args: &[&str], target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .arg("-j2")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node loads the component (its `describe()` runs) and mounts it.
fn assert_node_loads(root: &Path, wasm: &[u8]) {
    use std::io::{BufRead, BufReader, Read};
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("greeter.wasm"), wasm).unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "none",
            "--plugins",
        ])
        .arg(&plugins)
        .env("PORTICO_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
    let mut logs = String::new();
    node.stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line}\n{logs}");
    assert!(
        logs.contains("mounted") && logs.contains("greeter"),
        "{logs}"
    );
}

#[test]
fn generated_plugin_builds_tests_and_is_a_component() {
    let root = std::env::temp_dir().join(format!("portico-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("greeter");
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["plugin", "new", "greeter", "--dir"])
        .arg(&dir)
        .arg("--sdk-path")
        .arg(workspace().join("plugin-sdk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created plugin greeter in "));

    // Pin the generated crate to the versions this workspace already uses
    // (no registry look-ups, and the shared target dir stays warm).
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = workspace().join("target/scaffold-test");
    cargo(&dir, &["test", "--quiet"], &target);
    cargo(
        &dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
        &target,
    );
    let wasm = std::fs::read(target.join("wasm32-wasip2/release/greeter.wasm")).unwrap();
    assert_eq!(
        &wasm[..8],
        b"\0asm\x0d\0\x01\0",
        "a component, not a core module"
    );
    assert_node_loads(&root, &wasm);

    // Generating again into the same place refuses, naming the reason.
    let again = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["plugin", "new", "greeter", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    std::fs::remove_dir_all(&root).unwrap();
}
