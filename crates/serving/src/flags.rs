//! Parsing the services' connection-limit flags (`--header-read-timeout`,
//! `--idle-timeout`, `--max-connections`), shared so the three binaries accept and refuse
//! the same values. Each binary declares the flags itself, with its own environment names.

use std::time::Duration;

/// A humantime duration (`10s`, `1m30s`, `500ms`) greater than zero.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(serving::flags::parse_timeout("1m15s"), Ok(Duration::from_secs(75)));
/// assert!(serving::flags::parse_timeout("0s").is_err());
/// ```
///
/// # Errors
///
/// What is wrong with `text`, for clap to show.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(timeout)
}

/// A number of connections, at least 1.
///
/// ```
/// assert_eq!(serving::flags::parse_max_connections("768"), Ok(768));
/// assert!(serving::flags::parse_max_connections("0").is_err());
/// ```
///
/// # Errors
///
/// What is wrong with `text`, for clap to show.
pub fn parse_max_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(max) => Ok(max),
        Err(error) => Err(error.to_string()),
    }
}
