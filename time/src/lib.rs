//! RFC 3339 timestamps and calendar dates in UTC, without a date library:
//! the guest component needs them too, and a date crate would double its
//! size for four functions. One implementation for the guest, the store and
//! the fake Gong.
//!
//! `no_std` (with `alloc`), because the guest is built without std.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::{format, string::String};

/// `2024-05-01T12:00:00Z` for unix seconds.
pub fn format_rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Unix seconds of an RFC 3339 date-time: `2024-05-01T10:00:00Z`,
/// `2024-05-01T10:00:00.123+02:00` (fractions dropped; `t`, `z` and a space
/// for `T` accepted, as RFC 3339 allows).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let day = parse_date(text.get(..10)?)?;
    let (h, mi, s) = (digits(text, 11..13)?, digits(text, 14..16)?, digits(text, 17..19)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &fraction[n..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let (oh, om) = (digits(rest, 1..3)?, digits(rest, 4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let seconds = oh * 3600 + om * 60;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    Some(day + h * 3600 + mi * 60 + s - offset)
}

pub fn is_rfc3339(text: &str) -> bool {
    parse_rfc3339(text).is_some()
}

/// Unix seconds of midnight UTC of `YYYY-MM-DD`, a real day of a real month.
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(text, 0..4)?, digits(text, 5..7)?, digits(text, 8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

pub fn is_date(text: &str) -> bool {
    parse_date(text).is_some()
}

fn digits(text: &str, range: core::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [-86_400, 0, 59, 951_782_400, 1_704_067_200, 1_714_564_799, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(parse_rfc3339("2024-05-01T02:00:00.123+02:00"), Some(1_714_521_600));
        assert_eq!(parse_rfc3339("2024-04-30T19:30:00-04:30"), Some(1_714_521_600));
        assert_eq!(parse_rfc3339("2024-12-31t23:59:60z"), Some(1_735_689_600));
        assert_eq!(parse_date("2024-05-01"), Some(1_714_521_600));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+2",
            "2024-05-01T10:00:00+25:00",
            "2024-05-01T10:00:00Zjunk",
            "２０２４-05-01T10:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
        assert!(is_date("2024-02-29") && !is_date("2023-02-29") && !is_date("2024-00-10") && !is_date("24-01-01"));
    }
}
