//! `GET /api/health` (anonymous): liveness and the identity source in use.
//! Makes no outbound call.

use super::Outcome;
use crate::invocation::{Invocation, Reply};
use crate::state::AppState;
use actix_web::web;

#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    identity_source: crate::identity::CredentialSource,
}

pub async fn run(_: Invocation, state: web::Data<AppState>) -> Outcome {
    Ok(Reply::ok_json(&Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        identity_source: state.identity.source(),
    }))
}
