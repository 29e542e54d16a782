//! Sync frequencies as Nango writes them: `every 1h`, `every 30 minutes`,
//! `every day`, `2h`, `45s`.

/// Seconds, from Nango's syntax; the error says what is accepted.
pub fn parse(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{}` is not a frequency; write e.g. `every 1h`, `every 30 minutes`, `every day` or `2h` \
             (units: s, m, h, d, w)",
            text.chars().take(40).collect::<String>()
        )
    };
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("every").map(str::trim_start).unwrap_or(&lower);
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let (number, unit) = rest.split_at(digits);
    let count: u64 = if number.is_empty() { 1 } else { number.parse().map_err(|_| bad())? };
    let unit_secs = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(bad()),
    };
    match count.checked_mul(unit_secs) {
        Some(0) => Err(format!("a frequency must be at least one second, not `{}`", text.trim())),
        Some(secs) if secs <= 366 * 86_400 => Ok(secs),
        _ => Err(format!("`{}` is longer than a year; a sync that rare is better triggered by hand", text.trim())),
    }
}

/// `every 1h`, `every 30m`, `every 1d`, `every 45s`: the largest whole unit.
pub fn format(secs: u64) -> String {
    let (count, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "d"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "h"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "m"),
        s => (s, "s"),
    };
    format!("every {count}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nangos_forms() {
        for (text, secs) in [
            ("every 1h", 3_600),
            ("every hour", 3_600),
            ("every 30 minutes", 1_800),
            ("every day", 86_400),
            ("2h", 7_200),
            ("45s", 45),
            ("EVERY 2 Days", 172_800),
            ("every 1w", 604_800),
        ] {
            assert_eq!(parse(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_frequency() {
        for text in ["", "every", "soon", "every -1h", "every 0m", "1y", "every 99999999999999999999h", "every 400d"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format(3_600), "every 1h");
        assert_eq!(format(1_800), "every 30m");
        assert_eq!(format(86_400), "every 1d");
        assert_eq!(format(90), "every 90s");
        for secs in [1, 59, 60, 3_599, 7_200, 86_400 * 3] {
            assert_eq!(parse(&format(secs)), Ok(secs));
        }
    }
}
