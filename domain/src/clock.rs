//! The wall clock, read the same way everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds; 0 on a clock set before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix milliseconds; 0 on a clock set before 1970.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
