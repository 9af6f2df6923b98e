#!/usr/bin/env bash
# The added clean build time of the host when it links wasmtime-wasi + wasmtime-wasi-http
# (=48.0.8, the host's wasmtime): two clean `cargo build -j2 -p portico` (the dev profile
# `make build` uses) of `git archive HEAD`, as is and with build-time/wasi_http_link.rs
# compiled in and called (so its code is generated and linked). Crates are fetched
# first, so downloads are not timed. Usage: bench/wasi-http-cost/build-time.sh [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
work=${1:-/tmp/wasi-http-build-time}
rm -rf "$work"
mkdir -p "$work/base" "$work/wasi"
git -C "$repo" archive HEAD | tar -x -C "$work/base"
git -C "$repo" archive HEAD | tar -x -C "$work/wasi"

# The variant: two dependencies, the link module, and one call to it at start-up.
cd "$work/wasi"
sed -i 's|^wasmtime.workspace = true$|&\nwasmtime-wasi = { version = "=48.0.8", default-features = false, features = ["p2"] }\nwasmtime-wasi-http = "=48.0.8"|' host/Cargo.toml
cp "$here/build-time/wasi_http_link.rs" host/src/wasi_http_link.rs
echo 'pub mod wasi_http_link;' >> host/src/lib.rs
# Only when asked (never in practice): the linker is built, so the code is linked.
sed -i 's|^fn main() -> anyhow::Result<()> {$|&\n    if std::env::var_os("PORTICO_WASI_HTTP_LINK").is_some() {\n        let engine = wasmtime::Engine::default();\n        portico::wasi_http_link::link(\&engine).map_err(\|e\| anyhow::anyhow!("{e}"))?;\n        drop(wasmtime::Store::new(\&engine, portico::wasi_http_link::state()));\n    }|' host/src/main.rs
grep -q PORTICO_WASI_HTTP_LINK host/src/main.rs
grep -q '^wasmtime-wasi-http' host/Cargo.toml

# Cargo's own figure: the wait for the machine's global cargo lock is not counted.
for v in base wasi; do
  cd "$work/$v"
  cargo fetch -q
  cargo build -j2 -p portico --timings 2>&1 | tee "$work/$v.log" | tail -1
  printf '%s: %s\n' "$v" "$(grep -o 'Finished.*' "$work/$v.log")" >> "$work/times.txt"
done
cat "$work/times.txt"
