//! `GET /api/health` (anonymous): liveness and the identity source in use.
//! Makes no outbound call.

use super::Outcome;
use crate::invocation::{Invocation, Reply};
use crate::state::AppState;
use actix_web::web;
use serde_json::json;

pub async fn run(_: Invocation, state: web::Data<AppState>) -> Outcome {
    Ok(Reply::ok_json(&json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "identity_source": state.identity.describe(None).source,
    })))
}
