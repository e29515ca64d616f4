//! The baseline of `cargo bench --bench handler`: a bare actix-web server, the
//! same actix-web build as the handler, answering what the handler answers
//! with constant bodies of about the same size. Every figure the bench prints
//! is a ratio to this server, measured in the same run.
//!
//! `bare_actix <port>` (0 picks one; the bound port is printed on stdout).

use actix_web::{App, HttpResponse, HttpServer, web};

const HEALTH: &str =
    r#"{"status":"ok","version":"0.1.0","identity_source":"app_service (2019-08-01)"}"#;

async fn ready() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn json_get() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(HEALTH)
}

async fn json_post(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            r#"{{"Outputs":{{"res":{{"statusCode":200,"body":"{}"}}}}}}"#,
            body.len()
        ))
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        println!("{}", listener.local_addr()?.port());
        HttpServer::new(|| {
            App::new()
                .route("/", web::get().to(ready))
                .route("/{tail:.*}", web::get().to(json_get))
                .route("/{tail:.*}", web::post().to(json_post))
        })
        .disable_signals()
        .listen(listener)?
        .run()
        .await
    })
}
