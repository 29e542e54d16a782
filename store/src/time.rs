//! Timestamps as people read and write them: RFC 3339 in UTC out, RFC 3339
//! (any offset), a date or unix seconds in.

/// `2024-05-01T12:00:00Z` for unix seconds.
pub fn rfc3339(unix: u64) -> String {
    terapi_time::format_rfc3339(unix as i64)
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
    terapi_time::parse_rfc3339(text)
        .or_else(|| terapi_time::parse_date(text))
        .and_then(|t| u64::try_from(t).ok())
        .ok_or_else(|| format!("not a time; {EXPECTED}"))
}

/// Unix ms from what `parse` reads, keeping an RFC 3339 time's fraction
/// (`2024-05-01T12:00:00.123Z` is 123 ms after the second; digits past the
/// third are dropped).
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let seconds = parse(text)?;
    let fraction = text
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|f| f.bytes().take_while(u8::is_ascii_digit).take(3).collect::<Vec<u8>>())
        .filter(|_| terapi_time::is_rfc3339(text));
    let ms = match fraction {
        Some(digits) => {
            let mut ms = 0u64;
            for i in 0..3 {
                ms = ms * 10 + u64::from(digits.get(i).map_or(0, |d| d - b'0'));
            }
            ms
        }
        None => 0,
    };
    seconds.checked_mul(1000).and_then(|s| s.checked_add(ms)).ok_or_else(|| "the time is too far away".to_string())
}

/// RFC 3339 with milliseconds (`2024-05-01T10:00:00.123Z`), as Nango writes times.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let text = rfc3339(unix_ms / 1000);
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}.{:03}Z", unix_ms % 1000),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_kept() {
        assert_eq!(parse_ms("2024-05-01T00:00:00.123Z"), Ok(1_714_521_600_123));
        assert_eq!(parse_ms("2024-05-01T02:00:00.5+02:00"), Ok(1_714_521_600_500));
        assert_eq!(parse_ms("2024-05-01T00:00:00.123456Z"), Ok(1_714_521_600_123));
        assert_eq!(parse_ms("2024-05-01"), Ok(1_714_521_600_000));
        assert_eq!(parse_ms(&rfc3339_ms(1_714_521_600_042)), Ok(1_714_521_600_042));
        assert!(parse_ms("yesterday").is_err());
    }

    #[test]
    fn reads_what_people_type() {
        assert_eq!(rfc3339(1_714_521_600), "2024-05-01T00:00:00Z");
        assert_eq!(parse("2024-05-01"), Ok(1_714_521_600));
        assert_eq!(parse("2024-05-01T02:00:00.123+02:00"), Ok(1_714_521_600));
        assert_eq!(parse(" 1714521600 "), Ok(1_714_521_600));
    }

    #[test]
    fn rejects_what_is_not_a_time_without_echoing_it() {
        for bad in ["", "yesterday", "2023-13-02", "2023-06-02T00:00:00", "99999999999999999999999", "1969-12-31"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("expected an RFC 3339 time"), "{bad}: {error}");
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
    }
}
