//! devstack's trace viewer: an OTLP/HTTP receiver for app1 and app2, a bounded
//! in-memory store of the last runs, their spans as JSON, and a page that
//! draws each run as a sequence diagram.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/traces` | OTLP/HTTP, protobuf or JSON (what the exporters send) |
//! | `GET /api/traces` | the stored runs, newest first |
//! | `GET /api/traces/{trace_id}` | one run: `{"spans":[…]}` |
//! | `GET /` | the page (`?trace=<id>`; default: the newest run) |

mod otlp;
pub mod store;

pub use store::{SpanRecord, TraceStore};

use actix_web::{HttpResponse, web};

/// The page: one self-contained HTML file (no build step, no CDN).
const PAGE: &str = include_str!("page.html");

/// Registers the routes on a server whose app data holds a `web::Data<TraceStore>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(otlp::MAX_BODY))
        .route("/v1/traces", web::post().to(otlp::receive))
        .route("/api/traces", web::get().to(list))
        .route("/api/traces/{trace_id}", web::get().to(one))
        .route("/", web::get().to(page));
}

async fn list(store: web::Data<TraceStore>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "traces": store.summaries() }))
}

async fn one(path: web::Path<String>, store: web::Data<TraceStore>) -> HttpResponse {
    let id = path.into_inner().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return problem(400, "a trace id is 32 hex digits");
    }
    match store.spans(&id) {
        Some(spans) => HttpResponse::Ok().json(serde_json::json!({ "spans": spans })),
        None => problem(404, "no such trace here (yet): spans arrive in batches"),
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page loads nothing from elsewhere.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ))
        .body(PAGE)
}

fn problem(status: u16, detail: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("a valid status"))
        .content_type("application/problem+json")
        .json(serde_json::json!({"type": "about:blank", "status": status, "detail": detail}))
}
