//! `GET /api/app2/{*path}`: call app2 with a token whose audience is app2, and
//! return app2's answer. A refusal (401, 403) or failure (5xx) is a 502.

use crate::problem::{Problem, Stage};
use crate::protocol::{Invocation, Outcome, Reply};
use crate::startup::AppState;
use actix_web::http::StatusCode;
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let path = inv.param("path").unwrap_or_default();
    crate::azure::app2::validate_path(path)?;
    let client = state.azure.app2.as_ref().map_err(Clone::clone)?;
    let query = forwarded_query(&inv.query);
    let response = client.get(path, &query).await?;
    if matches!(response.status, 401 | 403) || response.status >= 500 {
        return Err(refusal(&response));
    }
    Ok(Reply::bytes(
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY),
        response.content_type.unwrap_or_default(),
        response.body,
    ))
}

/// The caller's query without our function key. The host reads `code` in any
/// letter case, so every case variant is dropped. (Headers are never copied,
/// so `x-functions-key` cannot reach app2 either.)
fn forwarded_query(query: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            query
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("code")),
        )
        .finish()
}

/// A 502 problem for app2's refusal, with what app2 said.
pub fn refusal(response: &crate::azure::app2::App2Response) -> Problem {
    let said: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(300)
        .collect();
    let mut problem = Problem::new(
        StatusCode::BAD_GATEWAY,
        "app2-error",
        format!("app2 answered {}: {}", response.status, said.trim()),
    )
    .stage(Stage::App2)
    .upstream(Some(response.status));
    let json_body: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
    problem.extensions.insert(
        "upstream".into(),
        serde_json::json!({
            "status": response.status,
            "code": json_body.as_ref().and_then(|b| b.get("title")).and_then(|t| t.as_str()),
            "message": said.trim(),
            "www_authenticate": response.www_authenticate,
            "content_type": response.content_type,
            "required_role": json_body.as_ref().and_then(|b| b.get("required_role")).cloned(),
        }),
    );
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_key_never_reaches_app2_in_any_case() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let q = forwarded_query(&pairs(&[
            ("code", "k1"),
            ("CODE", "k2"),
            ("Code", "k3"),
            ("cOdE", "k4"),
            ("x", "1"),
        ]));
        assert_eq!(q, "x=1");
    }
}
