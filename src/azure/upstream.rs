//! Upstream failures, named by stage and status, never carrying a secret.

pub use crate::identity::error_chain;
use crate::identity::{TokenError, capped};
use crate::problem::{Problem, Stage};
use actix_web::http::StatusCode;
use azure_core::error::ErrorKind;
use serde::Serialize;

/// What an upstream said when it refused or failed.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamError {
    pub stage: Stage,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The service error code (`ForbiddenByRbac`, `AuthorizationPermissionMismatch`, …).
    pub code: Option<String>,
    pub message: String,
    /// `WWW-Authenticate`, when the upstream sent one.
    pub www_authenticate: Option<String>,
}

impl UpstreamError {
    /// Reads an `azure_core::Error` from an SDK client. A credential failure
    /// inside it becomes the identity problem it really is.
    pub fn from_azure(stage: Stage, err: &azure_core::Error) -> Result<Self, Problem> {
        if let Some(identity) = find_identity_error(err) {
            return Err(Problem::from(identity));
        }
        Ok(match err.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let body = raw_response
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(r.body().as_ref()).into_owned());
                let www_authenticate = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                            "www-authenticate",
                        ))
                        .map(capped)
                });
                Self {
                    stage,
                    status: Some(u16::from(*status)),
                    // Key Vault's inner code (ForbiddenByRbac) says more than the outer one (Forbidden).
                    code: body
                        .as_deref()
                        .and_then(inner_code)
                        .or_else(|| error_code.clone())
                        .map(|c| capped(&c)),
                    message: capped(
                        &body
                            .as_deref()
                            .and_then(service_message)
                            .unwrap_or_else(|| err.to_string()),
                    ),
                    www_authenticate,
                }
            }
            _ => Self {
                stage,
                status: None,
                code: None,
                message: capped(&error_chain(err)),
                www_authenticate: None,
            },
        })
    }

    /// The service's inner error code when it has one (`ForbiddenByRbac`).
    pub fn detailed_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn to_problem(&self) -> Problem {
        let temporary = matches!(self.status, None | Some(429 | 503 | 504));
        let status = if temporary {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        };
        let stage = serde_json::to_value(self.stage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let what = match self.status {
            Some(s) => format!("{stage} answered {s}"),
            None => format!("{stage} could not be reached"),
        };
        let code = self
            .code
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let mut problem = Problem::new(
            status,
            &format!("{stage}-error"),
            format!("{what}{code}: {}", self.message),
        )
        .stage(self.stage)
        .upstream(self.status);
        // The raw facts, for the diagnosis (service error bodies: never a token or secret).
        problem.extensions.insert(
            "upstream".into(),
            serde_json::to_value(self).unwrap_or_default(),
        );
        problem
    }
}

fn find_identity_error(err: &azure_core::Error) -> Option<&TokenError> {
    if let Some(e) = err.downcast_ref::<TokenError>() {
        return Some(e);
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<TokenError>() {
            return Some(e);
        }
        if let Some(e) = s
            .downcast_ref::<azure_core::Error>()
            .and_then(|inner| inner.downcast_ref::<TokenError>())
        {
            return Some(e);
        }
        source = s.source();
    }
    None
}

/// Key Vault `{"error":{"message"}}` or Storage `<Error><Message>`.
fn service_message(body: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
        return json["error"]["message"]
            .as_str()
            .map(|m| m.trim().to_owned());
    }
    let start = body.find("<Message>")? + "<Message>".len();
    let end = body[start..].find("</Message>")? + start;
    Some(body[start..end].trim().to_owned())
}

/// Key Vault's `innererror.code` (e.g. `ForbiddenByRbac`) beats the outer `Forbidden`.
fn inner_code(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["error"]["innererror"]["code"]
        .as_str()
        .or_else(|| json["error"]["code"].as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_service_messages() {
        let kv = r#"{"error":{"code":"Forbidden","message":"Caller is not authorized","innererror":{"code":"ForbiddenByRbac"}}}"#;
        assert_eq!(
            service_message(kv).as_deref(),
            Some("Caller is not authorized")
        );
        assert_eq!(inner_code(kv).as_deref(), Some("ForbiddenByRbac"));
        let storage = "<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized.</Message></Error>";
        assert_eq!(
            service_message(storage).as_deref(),
            Some("This request is not authorized.")
        );
    }

    #[test]
    fn echoed_upstream_text_is_capped() {
        let huge = format!("<Error><Message>{}</Message></Error>", "x".repeat(100_000));
        let message = service_message(&huge).map(|m| capped(&m)).unwrap();
        assert!(message.chars().count() <= crate::identity::MAX_ECHOED_CHARS + 1);
    }

    #[test]
    fn problems_name_stage_and_status() {
        let e = UpstreamError {
            stage: Stage::Keyvault,
            status: Some(403),
            code: Some("ForbiddenByRbac".into()),
            message: "Caller is not authorized".into(),
            www_authenticate: None,
        };
        let p = e.to_problem();
        assert_eq!(
            (p.status, p.upstream_status, p.stage),
            (502, Some(403), Some(Stage::Keyvault))
        );
        assert!(p.detail.contains("keyvault answered 403 (ForbiddenByRbac)"));
        let unreachable = UpstreamError { status: None, ..e };
        assert_eq!(unreachable.to_problem().status, 503);
    }
}
