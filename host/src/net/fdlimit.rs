//! The open-file limit. Containers usually start processes with a soft limit
//! of 1,024 while the hard limit is far higher; a node holding one descriptor
//! per client would run out long before its memory does, and `accept` failing
//! with `EMFILE` locks every new client out.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything that is not a client connection: Redis,
/// the data directory, plugin files, the admin listener's own clients.
const RESERVE: u64 = 256;

/// Set the soft limit to `wanted`, or to the hard limit when `wanted` is 0,
/// and return the limit in effect.
pub fn raise(wanted: u64) -> u64 {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let hard = maximum.unwrap_or(u64::MAX);
    let target = if wanted == 0 { hard } else { wanted.min(hard) };
    // An unlimited hard limit cannot be a soft one on Linux: cap it at what
    // the kernel allows a process (fs.nr_open, 1,048,576 by default).
    let target = target.min(nr_open());
    if current != Some(target) {
        let new = Rlimit {
            current: Some(target),
            maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, new) {
            tracing::warn!(error = %e, "cannot set the open-file limit to {target}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Connections a listener may hold with `files` descriptors: all but a reserve
/// (a quarter of a small limit).
pub fn connection_budget(files: u64) -> usize {
    let reserve = RESERVE.min(files / 4);
    files.saturating_sub(reserve).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_a_reserve() {
        assert_eq!(connection_budget(1024), 768);
        assert_eq!(connection_budget(100), 75);
        assert_eq!(connection_budget(65536), 65280);
    }
}
