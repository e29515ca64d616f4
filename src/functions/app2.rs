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
    // Never pass our function key (`code`) on to app2.
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(inv.query.iter().filter(|(k, _)| k != "code"))
        .finish();
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
