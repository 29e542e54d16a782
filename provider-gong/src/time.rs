//! "Now" from WASI's wall clock (the host grants clocks; nothing else), and
//! RFC 3339 from the shared `terapi-time`.

pub use terapi_time::{format_rfc3339, is_date, is_rfc3339, parse_rfc3339};

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
