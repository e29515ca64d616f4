//! Parsing `expires_on`, which the identity endpoints send in several shapes.
//!
//! * a JSON number of epoch seconds;
//! * a string of epoch seconds (the documented 2019-08-01 and IMDS form);
//! * a 2017-09-01 date string: Linux `06/20/2019 02:57:58 +00:00`, Windows
//!   `1/16/2020 5:24:12 AM +00:00`.
//!
//! Anything else is an error: a token with an unknown expiry must never be cached
//! as if it did not expire.

use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Reads `expires_on` from a token response.
pub fn parse_expires_on(value: &Value) -> Result<OffsetDateTime, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expires_on {n} is not a whole number of seconds"))
            .and_then(from_epoch),
        Value::String(s) => parse_str(s.trim()),
        other => Err(format!("expires_on has unexpected JSON type: {other}")),
    }
}

fn from_epoch(secs: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| format!("expires_on {secs}: {e}"))
}

fn parse_str(s: &str) -> Result<OffsetDateTime, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|e| format!("expires_on {s:?}: {e}"))
            .and_then(from_epoch);
    }
    parse_legacy_date(s).ok_or_else(|| {
        format!(
            "expires_on {s:?} is neither epoch seconds nor a 2017-09-01 date (M/D/YYYY H:MM:SS [AM|PM] +00:00)"
        )
    })
}

/// `M/D/YYYY H:MM:SS [AM|PM] ±HH:MM`, month/day/hour with or without a leading zero.
fn parse_legacy_date(s: &str) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let (date, clock, meridiem, offset) = match parts.as_slice() {
        [d, t, o] => (*d, *t, None, *o),
        [d, t, m, o] => (*d, *t, Some(*m), *o),
        _ => return None,
    };

    let mut d = date.split('/');
    let (month, day, year) = (number(d.next()?)?, number(d.next()?)?, number(d.next()?)?);
    if d.next().is_some() || date.split('/').nth(2)?.len() != 4 {
        return None;
    }
    let mut t = clock.split(':');
    let (mut hour, minute, second) = (number(t.next()?)?, number(t.next()?)?, number(t.next()?)?);
    if t.next().is_some() {
        return None;
    }
    match meridiem {
        None if hour <= 23 => {}
        // 12-hour clock: hour 0 with AM/PM (e.g. the malformed "00:00:00 PM") is rejected.
        Some(m) if (1..=12).contains(&hour) => match m.to_ascii_uppercase().as_str() {
            "AM" => hour %= 12,
            "PM" => hour = hour % 12 + 12,
            _ => return None,
        },
        _ => return None,
    }

    let offset = parse_offset(offset)?;
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

fn parse_offset(s: &str) -> Option<UtcOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (number(h)?, number(m)?);
    UtcOffset::from_hms(
        sign * i8::try_from(h).ok()?,
        sign * i8::try_from(m).ok()?,
        0,
    )
    .ok()
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn epoch(v: Value) -> Result<i64, String> {
        parse_expires_on(&v).map(|t| t.unix_timestamp())
    }

    #[test]
    fn epoch_string_and_number() {
        // I8: 1586984735 is 2020-04-15T21:05:35Z.
        assert_eq!(epoch(json!("1586984735")), Ok(1586984735));
        assert_eq!(epoch(json!(1586984735)), Ok(1586984735));
        assert_eq!(epoch(json!(" 1586984735 ")), Ok(1586984735));
    }

    #[test]
    fn legacy_linux_and_windows_dates() {
        // I9, values checked against the legacy Python parser.
        assert_eq!(epoch(json!("06/20/2019 02:57:58 +00:00")), Ok(1560999478));
        assert_eq!(epoch(json!("1/16/2020 5:24:12 AM +00:00")), Ok(1579152252));
        assert_eq!(
            epoch(json!("1/16/2020 5:24:12 PM +00:00")),
            Ok(1579152252 + 12 * 3600)
        );
        assert_eq!(
            epoch(json!("1/16/2020 12:24:12 AM +00:00")),
            Ok(1579152252 - 5 * 3600)
        );
        assert_eq!(epoch(json!("06/20/2019 04:57:58 +02:00")), Ok(1560999478));
    }

    #[test]
    fn rejects_malformed_and_iso_dates() {
        // I10: the malformed doc example and ISO strings are refused, never "no expiry".
        for bad in [
            json!("09/14/2017 00:00:00 PM +00:00"),
            json!("2020-04-15T21:05:35Z"),
            json!("13/01/2020 01:00:00 +00:00"),
            json!("1/16/20 5:24:12 AM +00:00"),
            json!("06/20/2019 02:57:58"),
            json!(""),
            json!(1.5),
            json!(null),
            json!(["1"]),
        ] {
            assert!(epoch(bad.clone()).is_err(), "{bad} should be rejected");
        }
    }
}
