//! Per-plugin configuration set by the operator (config file or admin API).
//!
//! Values are strings; [`get_parsed`] parses them and reports a bad value instead of silently
//! falling back to a default.
//!
//! ```no_run
//! use portico_sdk::config;
//! let max_text: usize = config::get_parsed_or("max_text", 2000).unwrap_or(2000);
//! let greeting = config::get_or("greeting", "hello");
//! # let _ = (max_text, greeting);
//! ```

use std::fmt;
use std::str::FromStr;

use crate::Rejection;

/// The value of `key`, if the operator set one.
///
/// ```
/// assert_eq!(portico_sdk::config::get("unset"), None);
/// ```
pub fn get(key: &str) -> Option<String> {
    crate::host::config_get(key)
}

/// The value of `key`, or `default`.
///
/// ```
/// assert_eq!(portico_sdk::config::get_or("unset", "x"), "x");
/// ```
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// The value of `key` parsed as `T`: `Ok(None)` when unset, an error when it does not parse.
///
/// ```
/// let step: Option<i64> = portico_sdk::config::get_parsed("step")?;
/// assert_eq!(step, None);
/// # Ok::<(), portico_sdk::config::ConfigError>(())
/// ```
pub fn get_parsed<T>(key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match get(key) {
        None => Ok(None),
        Some(value) => match value.trim().parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(e) => Err(ConfigError {
                key: key.to_owned(),
                value,
                reason: e.to_string(),
            }),
        },
    }
}

/// The value of `key` parsed as `T`, or `default` when unset; an error when it does not parse.
///
/// ```
/// let broadcast: bool = portico_sdk::config::get_parsed_or("broadcast", false)?;
/// assert!(!broadcast);
/// # Ok::<(), portico_sdk::config::ConfigError>(())
/// ```
pub fn get_parsed_or<T>(key: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(get_parsed(key)?.unwrap_or(default))
}

/// A configuration value that does not parse. Converts into a `config_error` [`Rejection`].
///
/// ```
/// # use portico_sdk::config::ConfigError;
/// # use portico_sdk::Rejection;
/// fn step() -> Result<i64, Rejection> {
///     Ok(portico_sdk::config::get_parsed_or("step", 1)?)
/// }
/// # let _ = step;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    value: String,
    reason: String,
}

impl ConfigError {
    /// The configuration key.
    ///
    /// ```no_run
    /// # let err: portico_sdk::config::ConfigError = portico_sdk::config::get_parsed::<u8>("k").unwrap_err();
    /// println!("bad key {}", err.key());
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value that did not parse.
    ///
    /// ```no_run
    /// # let err: portico_sdk::config::ConfigError = portico_sdk::config::get_parsed::<u8>("k").unwrap_err();
    /// println!("bad value {}", err.value());
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config `{}` = {:?} is invalid: {}",
            self.key, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for Rejection {
    fn from(e: ConfigError) -> Self {
        Rejection::new("config_error", e.to_string())
    }
}
