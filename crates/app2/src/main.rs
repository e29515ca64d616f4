//! app2's entry point. On App Service, `PORT` is set by the platform.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let settings = match app2::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("app2: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // In a container App Service reaches the app on 0.0.0.0; EasyAuth sits in front.
    let host = std::env::var("APP2_BIND").unwrap_or_else(|_| "0.0.0.0".into());
    match app2::Application::build_on(&host, settings) {
        Ok(app) => {
            tracing::info!(port = app.port(), "app2 listening");
            match app.run_until_stopped().await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("app2: cannot bind: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
