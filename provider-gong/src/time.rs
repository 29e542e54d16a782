//! RFC 3339 from the shared `terapi-time`. "Now" is the host's: it comes in
//! each page request (`now-unix-seconds`), as the component has no clock.

pub use terapi_time::{format_rfc3339, is_date, is_rfc3339, parse_rfc3339};
