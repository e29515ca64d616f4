//! `GET /api/health` (anonymous): liveness and the identity source in use.
//! Makes no outbound call.

use super::Outcome;
use crate::identity::CredentialSource;
use crate::invocation::{Invocation, Reply};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web;
use bytes::Bytes;
use std::sync::OnceLock;

#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    identity_source: CredentialSource,
}

/// The reply depends only on the identity source, which never changes while
/// the process runs: rendered once, not on every probe. (A process with more
/// than one state, as in tests, renders the others afresh.)
static RENDERED: OnceLock<(CredentialSource, Bytes)> = OnceLock::new();

pub async fn run(_: Invocation, state: web::Data<AppState>) -> Outcome {
    let source = state.identity.source();
    let (rendered_for, rendered) = RENDERED.get_or_init(|| (source, render(source)));
    let body = if *rendered_for == source {
        rendered.clone()
    } else {
        render(source)
    };
    Ok(Reply::bytes(StatusCode::OK, "application/json", body))
}

fn render(source: CredentialSource) -> Bytes {
    Reply::ok_json(&Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        identity_source: source,
    })
    .body
}
