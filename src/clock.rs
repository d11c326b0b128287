//! Wall-clock time as the stored records and the wire carry it: nanoseconds or microseconds
//! since the Unix epoch (saturating, never wrapping), and ISO-8601 UTC strings as Crossbar
//! writes `created` fields. A leaf: no other module of the crate below it.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    // A clock set before 1970 reads as the epoch rather than failing every caller.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Nanoseconds since the epoch; saturates at `i64::MAX` (year 2262).
pub fn now_ns() -> i64 {
    i64::try_from(since_epoch().as_nanos()).unwrap_or(i64::MAX)
}

/// Microseconds since the epoch; saturates at `i64::MAX`.
pub fn now_micros() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

/// UTC time now as `YYYY-MM-DDTHH:MM:SS.000Z`.
pub fn now_iso() -> String {
    format_utc(since_epoch().as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SS.000Z`, without pulling in a date crate.
pub fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn units_agree() {
        let ns = now_ns();
        let us = now_micros();
        assert!((us - ns / 1000).abs() < 1_000_000, "{us} vs {ns}");
        assert!(now_iso().ends_with(".000Z"));
    }
}
