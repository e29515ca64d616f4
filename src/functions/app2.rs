//! `GET /api/app2/{*path}`: call app2 with a token whose audience is app2, and
//! return app2's answer. A refusal (401, 403) or failure (5xx) is a 502.

use super::Outcome;
use crate::invocation::{Invocation, Reply};
use crate::names::App2Path;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let path = App2Path::parse(inv.param("path").unwrap_or_default())?;
    let client = state.azure.app2.as_ref().map_err(Clone::clone)?;
    let query = forwarded_query(&inv.query);
    let response = client.get(&path, &query).await?;
    if response.is_refusal() {
        return Err(response.refusal().into());
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
