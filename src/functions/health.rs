//! `GET /api/health` (anonymous): liveness and the identity source in use.
//! Makes no outbound call.

use crate::startup::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub async fn run(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "identity_source": state.identity.describe(None).source,
    }))
}
