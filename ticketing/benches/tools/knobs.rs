//! The benches' knobs: settings read from the environment, with defaults.

/// `name` from the environment as a number, else `default`.
pub fn var(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
