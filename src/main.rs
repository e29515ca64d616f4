//! `handler`: started by the Functions host (or by hand for local runs).

use handler::{Application, configuration::Settings, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            // Before telemetry exists: stderr lines become Error-level host logs.
            eprintln!("handler: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);

    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "the handler could not start");
            return std::process::ExitCode::from(1);
        }
    };
    let handle = app.handle();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "shutting down: finishing in-flight requests");
        handle.stop(true).await;
    });

    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("handler stopped");
            // 0 tells the host not to restart us: it asked us to stop.
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            std::process::ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
