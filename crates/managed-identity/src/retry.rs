//! Bounded retries with jittered exponential backoff for identity endpoints.

use std::time::{Duration, SystemTime};

/// How token requests are retried and timed out.
///
/// Two clocks bound every `get_token`: each attempt has its own timeout, and the
/// whole call (attempts plus back-off) has an overall deadline, so a dead endpoint
/// can never hold a Functions invocation for long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each later one.
    pub initial_delay: Duration,
    /// Upper bound for a single back-off delay (before `Retry-After` is applied).
    pub max_delay: Duration,
    /// Time allowed for one request, from connect to the last body byte.
    pub attempt_timeout: Duration,
    /// Time allowed for the whole call, back-off included.
    pub deadline: Duration,
}

impl RetryOptions {
    /// App Service defaults: at most 4 attempts (as azure-identity), about
    /// 0.8 s, 1.6 s, 3.2 s apart, well inside the 5-minute Functions timeout.
    pub fn app_service() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }

    /// IMDS defaults after Microsoft's guidance: 5 retries, delays of roughly
    /// 2, 4, 8, 16 and 30 s, capped at 60 s overall.
    pub fn imds() -> Self {
        Self {
            max_retries: 5,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }

    /// The back-off before retry number `retry` (1-based): exponential, capped,
    /// with ±20 % jitter so a fleet of instances does not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.8 + fastrand::f64() * 0.4)
    }
}

/// Whether a status is worth retrying. 404 and 410 mean "IMDS is updating" and are
/// retried for IMDS only; App Service treats 404 as final, like azure-identity.
pub fn is_retriable(status: u16, imds: bool) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504) || (imds && matches!(status, 404 | 410))
}

/// Reads `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let o = RetryOptions::app_service();
        for _ in 0..50 {
            let b1 = o.backoff(1).as_secs_f64();
            assert!((0.64..=0.96).contains(&b1), "{b1}");
            let b3 = o.backoff(3).as_secs_f64();
            assert!((2.56..=3.84).contains(&b3), "{b3}");
            let b10 = o.backoff(10).as_secs_f64();
            assert!(b10 <= 8.0 * 1.2, "{b10}");
        }
    }

    #[test]
    fn retriable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retriable(s, false));
            assert!(is_retriable(s, true));
        }
        for s in [400, 401, 403, 404, 410, 501, 505] {
            assert!(!is_retriable(s, false), "{s}");
        }
        assert!(is_retriable(404, true));
        assert!(is_retriable(410, true));
        assert!(!is_retriable(400, true));
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
