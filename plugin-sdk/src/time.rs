//! The host clock.
//!
//! ```no_run
//! let started = portico_sdk::time::now_ms();
//! # let _ = started;
//! ```

/// Milliseconds since the Unix epoch, from the host (the test host's clock in native tests,
/// which only moves with [`TestHost::advance`](crate::testing::TestHost::advance)).
///
/// ```
/// let now = portico_sdk::time::now_ms();
/// assert!(now > 0);
/// ```
pub fn now_ms() -> u64 {
    crate::host::now_ms()
}
