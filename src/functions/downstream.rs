//! `/api/downstream/{api}/{*path}`: call a named API with a token for its
//! scope, on a path and method its allow-list names, and return its answer.
//! A refusal (401, 403) or failure (5xx) is a diagnosed 502.

use super::Outcome;
use crate::azure::downstream::{ApiClient, ApiRequest};
use crate::invocation::{Invocation, Reply};
use crate::names::{ApiName, ApiPath};
use crate::problem::{Problem, ProblemType, Stage};
use crate::state::AppState;
use actix_web::http::{Method, StatusCode, header};
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let client = api_named(inv.param("api").unwrap_or_default(), &state)?;
    let path = ApiPath::parse(inv.param("path").unwrap_or_default())?;
    let api = client.api();
    // Before any token or call: the allow-list decides.
    if !api.methods.iter().any(|m| m == inv.method.as_str()) {
        return Err(not_allowed(format!(
            "{} is not one of {}'s allowed methods {:?} ({})",
            inv.method,
            api.name,
            api.methods,
            api.setting("methods")
        ))
        .into());
    }
    if !api.allows(inv.method.as_str(), &path) {
        let patterns: Vec<String> = api.allowed_paths.iter().map(ToString::to_string).collect();
        return Err(not_allowed(format!(
            "{path:?} is not among {}'s allowed paths {patterns:?} ({})",
            api.name,
            api.setting("allowed_paths")
        ))
        .into());
    }
    let query = forwarded_query(&inv.query);
    let body = (!matches!(inv.method, Method::GET | Method::HEAD)).then(|| {
        let content_type = inv.header(header::CONTENT_TYPE.as_str()).map(str::to_owned);
        (inv.body.clone(), content_type)
    });
    let method = reqwest::Method::from_bytes(inv.method.as_str().as_bytes())
        .map_err(|_| Problem::bad_request("unsupported method"))?;
    let response = client
        .send(ApiRequest {
            method,
            path: &path,
            query: &query,
            body,
            identity: None,
        })
        .await?;
    passthrough(response).await
}

/// The API's answer as the caller's, unless it refused or failed.
pub(super) async fn passthrough(response: crate::azure::downstream::ApiResponse) -> Outcome {
    if response.is_refusal() {
        return Err(response.refusal().into());
    }
    Ok(Reply::bytes(
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY),
        response.content_type.unwrap_or_default(),
        response.body,
    ))
}

fn api_named<'a>(name: &str, state: &'a AppState) -> Result<&'a ApiClient, Problem> {
    ApiName::parse(name)
        .ok()
        .and_then(|name| state.azure.apis.get(name.as_str()))
        .map(|client| client.as_ref())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                ProblemType::UnknownApi,
                format!(
                    "no downstream API is named {name:?}; the named APIs are {}",
                    state.settings.downstream.names().join(", ")
                ),
            )
            .stage(Stage::Request)
            .hint("Name an API with DOWNSTREAM_APIS__<NAME>__BASE_URL and __SCOPES (see the README's configuration table).")
        })
}

fn not_allowed(detail: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, ProblemType::PathNotAllowed, detail)
        .stage(Stage::Request)
        .hint("Add the path pattern (* = one segment, ** = the rest) to the API's ALLOWED_PATHS, and the method to its METHODS, if callers should reach it. By default no path is reachable.")
}

/// The caller's query without our function key. The host reads `code` in any
/// letter case, so every case variant is dropped. (Headers are never copied,
/// so neither `x-functions-key` nor the caller's `Authorization` leaves.)
pub fn forwarded_query(query: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            query
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("code")),
        )
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_key_never_leaves_in_any_case() {
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
