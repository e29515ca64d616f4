//! The functions. Each has a folder with a `function.json` at the app root and
//! a module here; routes carry the host's route prefix because forward mode
//! passes the original path (`/api/...`) through.

mod health;
mod token;

use actix_web::web;

/// `extensions.http.routePrefix` in host.json.
pub const ROUTE_PREFIX: &str = "api";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(ROUTE_PREFIX)
            .route("/health", web::get().to(health::run))
            .route("/token", web::get().to(token::run)),
    );
}
