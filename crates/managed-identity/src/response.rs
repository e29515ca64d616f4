//! Turning an endpoint's answer into a token or an error.

use super::error::IdentityError;
use super::expires_on::parse_expires_on;
use super::source_kind::SourceKind;
use super::transport::EndpointResponse;
use azure_core::credentials::{AccessToken, Secret};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_on: Option<Value>,
    /// IMDS only: seconds from now, as a string or a number.
    expires_in: Option<Value>,
}

/// Reads a 2xx body. Missing `access_token` or expiry, or a non-JSON body, is an error.
pub fn parse_token(
    source: SourceKind,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<AccessToken, IdentityError> {
    let invalid = |reason: String| IdentityError::InvalidResponse {
        via: source,
        reason,
    };
    // The body holds a token: never echo it, even partly, in an error.
    let parsed: TokenBody = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "body is not a JSON token response ({})",
            e.classify_name()
        ))
    })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("access_token is missing".into()))?;
    let expires_on = match (parsed.expires_on, parsed.expires_in) {
        (Some(v), _) => parse_expires_on(&v).map_err(invalid)?,
        (None, Some(v)) if source == SourceKind::Imds => {
            let secs = match &v {
                Value::String(s) => s.trim().parse::<i64>().ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("expires_in {v} is not a number of seconds")))?;
            now + time::Duration::seconds(secs)
        }
        _ => return Err(invalid("expires_on is missing".into())),
    };
    Ok(AccessToken::new(Secret::from(token), expires_on))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The parts of an error body users need, from the shapes the endpoints use:
/// App Service `{"statusCode","message","correlationId"}` and IMDS/Entra
/// `{"error","error_description"}`.
pub struct ErrorDetails {
    pub error_code: Option<String>,
    pub message: String,
    pub correlation_id: Option<String>,
}

/// The most characters of an upstream's own text that any error echoes (a
/// Key Vault 403 with its `Vault:` line is ~700): an
/// upstream body is not ours to amplify, however large it is.
pub const MAX_ECHOED_CHARS: usize = 2048;

/// `text`, trimmed and cut to [`MAX_ECHOED_CHARS`] characters (with `…` if cut).
pub fn capped(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text.chars().take(MAX_ECHOED_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

pub fn parse_error(response: &EndpointResponse) -> ErrorDetails {
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(capped)
    };
    let message = field("message")
        .or_else(|| field("error_description"))
        .or_else(|| field("Message"))
        .unwrap_or_else(|| {
            if json
                .as_ref()
                .is_some_and(|j| j.get("access_token").is_some())
            {
                "(response body withheld: it contains a token)".into()
            } else {
                let text = String::from_utf8_lossy(&response.body);
                let text = text.trim();
                if text.is_empty() {
                    "(empty body)".into()
                } else {
                    capped(text)
                }
            }
        });
    ErrorDetails {
        error_code: field("error"),
        message,
        correlation_id: field("correlationId").or_else(|| field("correlation_id")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    #[test]
    fn reads_app_service_body() {
        let body = br#"{"access_token":"A","expires_on":"1586984735","resource":"https://vault.azure.net","token_type":"Bearer","client_id":"c"}"#;
        let t = parse_token(SourceKind::AppService, body, NOW).unwrap();
        assert_eq!(t.token.secret(), "A");
        assert_eq!(t.expires_on, datetime!(2020-04-15 21:05:35 UTC));
    }

    #[test]
    fn imds_may_send_only_expires_in() {
        let body = br#"{"access_token":"A","expires_in":"3599","token_type":"Bearer"}"#;
        let t = parse_token(SourceKind::Imds, body, NOW).unwrap();
        assert_eq!(t.expires_on, NOW + time::Duration::seconds(3599));
        assert!(parse_token(SourceKind::AppService, body, NOW).is_err());
    }

    #[test]
    fn incomplete_or_non_json_bodies_are_errors() {
        for body in [
            &br#"{"expires_on":"1586984735"}"#[..],
            br#"{"access_token":"A"}"#,
            br#"{"access_token":"","expires_on":"1"}"#,
            b"<html>oops</html>",
            b"",
        ] {
            let err = parse_token(SourceKind::AppService, body, NOW).unwrap_err();
            assert!(matches!(err, IdentityError::InvalidResponse { .. }));
        }
    }

    #[test]
    fn error_message_never_echoes_a_token() {
        let body = br#"{"access_token":"SECRET-TOKEN","expires_on":"soon"}"#;
        let err = parse_token(SourceKind::AppService, body, NOW).unwrap_err();
        assert!(!err.to_string().contains("SECRET-TOKEN"));
        let details = parse_error(&EndpointResponse {
            status: 500,
            retry_after: None,
            body: body.to_vec(),
        });
        assert!(!details.message.contains("SECRET-TOKEN"));
    }

    #[test]
    fn reads_error_shapes() {
        let app = parse_error(&EndpointResponse {
            status: 400,
            retry_after: None,
            body: br#"{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"c-1"}"#.to_vec(),
        });
        assert_eq!(app.message, "Unable to load the proper Managed Identity.");
        assert_eq!(app.correlation_id.as_deref(), Some("c-1"));
        let imds = parse_error(&EndpointResponse {
            status: 400,
            retry_after: None,
            body: br#"{"error":"invalid_resource","error_description":"AADSTS500011: not found"}"#
                .to_vec(),
        });
        assert_eq!(imds.error_code.as_deref(), Some("invalid_resource"));
        assert!(imds.message.starts_with("AADSTS500011"));
    }
}
