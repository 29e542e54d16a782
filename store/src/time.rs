//! Timestamps as people read and write them: RFC 3339 in UTC out, RFC 3339
//! (any offset) or unix seconds in.

/// `2024-05-01T12:00:00Z` for unix seconds.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Unix seconds from RFC 3339 (`2024-05-01T12:00:00Z`, `…+02:00`, fractions
/// ignored), a date (`2024-05-01`, midnight UTC) or unix seconds. The error
/// says what is accepted and never repeats the input.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    const EXPECTED: &str =
        "expected an RFC 3339 time such as 2024-05-01T00:00:00Z, a date such as 2024-05-01, or unix seconds";
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("the number is too large; {EXPECTED}"));
    }
    parse_rfc3339(text).ok_or_else(|| format!("not a time; {EXPECTED}"))
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        seconds += h * 3600 + mi * 60 + s;
        let mut rest = &text[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            rest = &fraction[digits..];
        }
        seconds -= match rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                // `rest` is the last six bytes: ±HH:MM.
                let offset = num(text.len() - 5..text.len() - 3)? * 3600 + num(text.len() - 2..text.len())? * 60;
                if *sign == b'+' { offset } else { -offset }
            }
            _ => return None,
        };
    }
    u64::try_from(seconds).ok()
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
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_521_600), "2024-05-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 59, 951_782_400, 1_714_521_600, 1_714_564_799, 4_102_444_800] {
            assert_eq!(parse(&rfc3339(t)), Ok(t));
        }
        assert_eq!(parse("2024-05-01"), Ok(1_714_521_600));
        assert_eq!(parse("2024-05-01T02:00:00.123+02:00"), Ok(1_714_521_600));
        assert_eq!(parse("2024-04-30T19:30:00-04:30"), Ok(1_714_521_600));
        assert_eq!(parse("1714521600"), Ok(1_714_521_600));
    }

    #[test]
    fn rejects_what_is_not_a_time_without_echoing_it() {
        for bad in [
            "",
            "yesterday",
            "2023-13-02",
            "2023-02-29",
            "2023-06-02T25:00:00Z",
            "2023-06-02T00:00:00",
            "2023-06-02T00:00:00+2",
            "2023-06-02T00:00:00.Z",
            "99999999999999999999999",
            "2023-06-02T00:00:00Zjunk",
            "ünï-05-01",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("expected an RFC 3339 time"), "{bad}: {error}");
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
    }
}
