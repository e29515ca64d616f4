//! app2's entry point. On App Service, `PORT` is set by the platform.

fn main() -> std::process::ExitCode {
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
    // Spans are exported only when a standard setting asks; built before the
    // runtime, since the exporters send from threads of their own.
    let telemetry = match app_telemetry::Export::from_env()
        .and_then(|export| app_telemetry::Telemetry::new("app2", &export))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("app2: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("app2: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    // In a container App Service reaches the app on 0.0.0.0; EasyAuth sits in front.
    let host = std::env::var("APP2_BIND").unwrap_or_else(|_| "0.0.0.0".into());
    let code = runtime.block_on(async {
        match app2::Application::build_traced(&host, settings, &telemetry) {
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
    });
    drop(runtime);
    telemetry.shutdown();
    code
}
