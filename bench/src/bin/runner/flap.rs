//! The "delivery under network flaps" section: `e2e/bench/flap.mjs`'s JSON lines
//! (`make bench-flap` writes them to `target/bench/flap.jsonl` before the runner starts).

use std::fmt::Write;

use serde_json::Value;

pub const FILE: &str = "target/bench/flap.jsonl";

pub fn section(o: &mut String, lines: Option<&str>) {
    let _ = writeln!(o, "## Delivery under network flaps (issue 12)\n");
    let Some(lines) = lines else {
        let _ = writeln!(
            o,
            "not available: `{FILE}` is missing (run `make bench-flap`).\n"
        );
        return;
    };
    let _ = writeln!(
        o,
        "`e2e/bench/flap.mjs` against the release build, same run: the official `socket.io-client` receiver is cut every 0.7 s through a TCP proxy while a sender publishes 2,000 acked messages at 400/s to its room; a receiver that was not recovered rejoins the room, as an application would. Servers are not pinned to a core here.\n"
    );
    let _ = writeln!(
        o,
        "| Peer | acked | lost | duplicated | reconnects | recovered | reconnect to first replayed message, p50 / max ms |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let peer = v["peer"].as_str().unwrap_or("?");
        if let Some(e) = v["error"].as_str() {
            let _ = writeln!(o, "| {peer} | failed: {} | | | | | |", e.replace('|', "/"));
            continue;
        }
        let n = |k: &str| v[k].as_u64().map_or("-".to_owned(), |x| x.to_string());
        let _ = writeln!(
            o,
            "| {peer} | {} | {} ({}%) | {} | {} | {} | {} / {} |",
            n("acked"),
            n("lost"),
            v["lost_pct"].as_f64().unwrap_or(0.0),
            n("duplicated"),
            n("reconnects"),
            n("recovered"),
            n("first_replayed_ms_p50"),
            n("first_replayed_ms_max"),
        );
    }
    let _ = writeln!(o);
}
