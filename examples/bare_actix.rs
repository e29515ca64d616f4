//! The baseline of `cargo bench --bench handler`: a bare actix-web server, the
//! same actix-web build as the handler, answering each path with a constant
//! body as long as the handler's answer there, so both servers move the same
//! bytes. Every figure the bench prints is a ratio to this server, measured in
//! the same run.
//!
//! `bare_actix <port> [<METHOD> <path> <bytes>]...`: `GET /` answers an empty
//! 200 (the readiness probe); each triple is a route answering `<bytes>` bytes
//! of JSON; anything else answers a short JSON body.

use actix_web::{App, HttpResponse, HttpServer, web};
use std::sync::Arc;

/// (method, path, body), one route each.
type Bodies = Arc<Vec<(String, String, web::Bytes)>>;

/// `{"pad":"xxx…"}`, `len` bytes in all (at least the braces and the key).
fn json_of_length(len: usize) -> web::Bytes {
    let pad = len.saturating_sub(r#"{"pad":""}"#.len());
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)).into()
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn json(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let bodies: Bodies = Arc::new(
        args[1.min(args.len())..]
            .chunks(3)
            .filter_map(|t| match t {
                [method, path, len] => Some((
                    method.clone(),
                    path.clone(),
                    json_of_length(len.parse().ok()?),
                )),
                _ => None,
            })
            .collect(),
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        println!("{}", listener.local_addr()?.port());
        HttpServer::new(move || {
            // A route per path, as any actix-web app has: the router's work
            // is part of the baseline.
            let mut app = App::new().route("/", web::get().to(ready));
            for (method, path, body) in bodies.iter() {
                let method = actix_web::http::Method::from_bytes(method.as_bytes())
                    .unwrap_or(actix_web::http::Method::GET);
                let body = body.clone();
                app = app.route(
                    path,
                    web::method(method).to(move |_: web::Bytes| {
                        let body = body.clone();
                        async move { json(body) }
                    }),
                );
            }
            app.default_service(web::to(|| async {
                json(web::Bytes::from_static(br#"{"status":"ok"}"#))
            }))
        })
        .disable_signals()
        .listen(listener)?
        .run()
        .await
    })
}
