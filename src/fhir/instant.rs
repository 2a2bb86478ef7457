//! Conversions between stored timestamps (microseconds since the Unix epoch, UTC) and the
//! FHIR `instant` text.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// `2026-11-22T12:44:22.123456Z`: full precision, so `_since` can take a `meta.lastUpdated`
/// back without losing versions written in the same millisecond.
pub fn format_instant(micros: i64) -> String {
    to_datetime(micros).to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Parses an instant (`2026-01-02T03:04:05Z`, with any fraction and offset) or, for
/// convenience, a day (`2026-01-02`, meaning its start in UTC).
pub fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_at_microsecond_precision() {
        let t = 1_795_000_000_123_456;
        assert_eq!(parse_instant(&format_instant(t)), Some(t));
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000_000));
        assert_eq!(
            parse_instant("2026-01-01T01:00:00+01:00"),
            parse_instant("2026-01-01")
        );
        assert_eq!(parse_instant("yesterday"), None);
    }
}
