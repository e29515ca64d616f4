//! `handler`: started by the Functions host (or by hand for local runs);
//! `handler doctor` checks the app's identity setup from a console.

use handler::{Application, configuration::Settings, telemetry};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("doctor") {
        return handler::doctor::cli::main(&args[1..]);
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            // Before telemetry exists: stderr lines become Error-level host logs.
            eprintln!("handler: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    // Before the runtime: the exporters send from threads of their own.
    let telemetry = match telemetry::Export::from_env()
        .and_then(|export| telemetry::init(&settings.telemetry, &export))
    {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("handler: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("handler: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(settings, telemetry.is_exporting()));
    drop(runtime);
    // The last spans of the run go out before the process ends.
    telemetry.shutdown();
    code
}

async fn serve(settings: Settings, exporting: bool) -> std::process::ExitCode {
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "the handler could not start");
            return std::process::ExitCode::from(1);
        }
    };
    tracing::info!(exporting, "telemetry ready");
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
