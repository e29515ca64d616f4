//! `GET /api/doctor` (auth level admin: it shows the configuration): the
//! report `handler doctor --json` prints, for plans with no console (Flex
//! Consumption). Only the app's own resources: no `--resource` here, as
//! `/api/token` mints only for its allow-list.

use super::Outcome;
use crate::doctor::{Options, run};
use crate::invocation::{Invocation, Reply};
use crate::state::AppState;
use actix_web::web;

pub async fn run_function(_inv: Invocation, state: web::Data<AppState>) -> Outcome {
    Ok(Reply::ok_json(&run(&state, &Options::default()).await))
}
