//! UTC timestamps as RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`), the form of
//! Kubernetes `Time` and of the node state file's `updated_at`, without a
//! date crate in the plugin binaries.

use std::time::Duration;

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (Kubernetes `Time`).
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A duration since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (Kubernetes
/// `MicroTime`).
pub fn rfc3339_micro(since: Duration) -> String {
    let (y, mo, d, h, mi, s) = civil(since.as_secs());
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        since.subsec_micros()
    )
}

/// Civil date and time from Unix seconds: proleptic Gregorian, H. Hinnant's
/// days-from-civil inverse.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_leap_day_and_century() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_micro(Duration::new(1, 5_000)),
            "1970-01-01T00:00:01.000005Z"
        );
    }
}
