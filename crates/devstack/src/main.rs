//! `devstack`: run the local Azure stand-ins, the Functions host stand-in and
//! the reference flow.
//!
//! ```text
//! devstack demo                               # build, start everything, run POST /api/flow, stop
//! devstack up --env-file .devstack/env        # everything, until Ctrl-C
//! devstack up --no-host                       # stand-ins only, for a real `func start`
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use devstack::demo::{AppSpec, Profile, locate_handler, start_host};
use devstack::host::HostMode;
use devstack::stack::{Ports, Stack, StackOptions};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "devstack",
    about = "Local stand-ins for the Azure services app1 talks to"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything, write the env file when ready, run until SIGINT/SIGTERM.
    Up(UpArgs),
    /// Build the handler, start everything, run POST /api/flow, print the report
    /// and the run's trace, stop (or, with --stay, keep the trace page up).
    Demo(DemoArgs),
    /// List the failure scenarios (`--scenario NAME` for up and demo).
    Scenarios,
}

#[derive(clap::Args)]
struct StackArgs {
    /// Certificates, generated config and the Azurite install.
    #[arg(long, env = "DEVSTACK_HOME", default_value = ".devstack")]
    state_dir: PathBuf,
    /// Where Azurite is installed (kept between runs); default `<state-dir>/cache`.
    #[arg(long, env = "DEVSTACK_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Use the documented fixed ports instead of free ones
    /// (identity 41564, Key Vault 8443, Azurite 10000, app2 gate 8444, Graph 8445, partner login 8446).
    #[arg(long)]
    fixed_ports: bool,
    /// Do not start Azurite (no Node.js needed; no STORAGE_ACCOUNT_URL).
    #[arg(long)]
    no_azurite: bool,
    /// Seed secrets file: {"secrets":[{"name","value","contentType"}]}.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// The Function App root (host.json and the function folders).
    #[arg(long, default_value = ".")]
    app_root: PathBuf,
    /// The handler executable (default: what cargo built, wherever its target
    /// directory is: debug, or release for `demo --release`).
    #[arg(long)]
    handler: Option<PathBuf>,
    /// Override host.json: forward raw requests, or send invocation payloads.
    #[arg(long, value_enum)]
    host_mode: Option<HostMode>,
    /// Enforce function keys like `func start --enableAuth` (off by default, like `func start`).
    #[arg(long)]
    enforce_keys: bool,
    /// Start the default world with exactly one thing broken (see `devstack scenarios`).
    #[arg(long, value_enum)]
    scenario: Option<devstack::scenario::Scenario>,
    /// The host stand-in's port (`func start` uses 7071; 0 picks a free one).
    #[arg(long, default_value_t = 7071)]
    host_port: u16,
}

#[derive(clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Keep everything running after the flow, so the trace page stays up (Ctrl-C stops).
    #[arg(long)]
    stay: bool,
    /// Build and run the release handler instead of the debug one.
    #[arg(long)]
    release: bool,
    /// Show the stack's and the handler's log lines live, instead of writing
    /// them to `<state-dir>/demo.log`.
    #[arg(long)]
    verbose: bool,
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Where to write KEY=VALUE lines once everything is ready.
    #[arg(long, default_value = ".devstack/env")]
    env_file: PathBuf,
    /// Do not start the host stand-in (run the real `func start` against the env file instead).
    #[arg(long)]
    no_host: bool,
}

/// Where the stack's log lines (devstack's own and the handler's console) go:
/// stderr, or for the demo a file it names, so its report stands alone.
fn init_logs(to_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,actix_server=warn".into());
    match to_file {
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init()
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_file = match &cli.command {
        Command::Demo(args) if !args.verbose => Some(args.stack.state_dir.join("demo.log")),
        _ => None,
    };
    if let Err(err) = init_logs(log_file.as_deref()) {
        eprintln!("devstack: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    if let Some(path) = &log_file {
        eprintln!(
            "logs: {} (--verbose shows them here instead)",
            path.display()
        );
    }
    let result = match cli.command {
        Command::Up(args) => up(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Scenarios => {
            for s in devstack::scenario::Scenario::ALL {
                println!("{:<24}{}", s.name(), s.describe());
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("devstack: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn stack_options(args: &StackArgs) -> StackOptions {
    let mut options = StackOptions::new(&args.state_dir);
    options.azurite = !args.no_azurite;
    options.seed_file = args.secrets.clone();
    options.cache_dir = args.cache_dir.clone();
    options.scenario = args.scenario;
    if args.fixed_ports {
        options.ports = Ports::fixed();
    }
    options
}

/// The app and handler from the command line (the handler defaults to `cargo build` output).
/// `profiles`: where to look first (the demo looks where it just built).
fn app_spec(args: &StackArgs, port: u16, profiles: &[Profile]) -> anyhow::Result<AppSpec> {
    let executable = match &args.handler {
        Some(p) => Some(p.clone()),
        None => locate_handler(&args.app_root, profiles)?,
    };
    Ok(AppSpec {
        app_root: args.app_root.clone(),
        executable,
        mode: args.host_mode.unwrap_or(HostMode::FromHostJson),
        enforce_keys: args.enforce_keys,
        port,
    })
}

async fn up(args: UpArgs) -> anyhow::Result<std::process::ExitCode> {
    // Find the handler before anything starts, so a missing one fails at once.
    let app = if args.no_host {
        None
    } else {
        Some(app_spec(
            &args.stack,
            args.stack.host_port,
            &[Profile::Debug, Profile::Release],
        )?)
    };
    let stack = Stack::start(stack_options(&args.stack)).await?;
    let mut extra = vec![];
    let host = if let Some(app) = app {
        let host = start_host(&stack, &app).await?;
        extra.push(("FUNCTIONS_BASE_URL".to_owned(), host.url.clone()));
        if args.stack.enforce_keys {
            extra.push((
                "FUNCTIONS_MASTER_KEY".to_owned(),
                host.keys().master.clone(),
            ));
            extra.push((
                "FUNCTIONS_DEFAULT_KEY".to_owned(),
                host.keys().function.clone(),
            ));
        }
        Some(host)
    } else {
        None
    };
    stack.write_env_file(&args.env_file, &extra)?;
    tracing::info!(env_file = %args.env_file.display(), "devstack is ready");
    tracing::info!("traces: open {}/ to see each run drawn", stack.traces_url);
    for (k, v) in stack.env().iter().chain(&extra) {
        if !k.ends_with("_HEADER") && !k.ends_with("_SECRET") && !k.ends_with("_KEY") {
            tracing::info!("  {k}={v}");
        }
    }
    let signal = shutdown_signal().await;
    tracing::info!(signal, "stopping devstack");
    if let Some(host) = host {
        host.stop().await;
    }
    stack.stop().await;
    let _ = std::fs::remove_file(&args.env_file);
    tracing::info!("devstack stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

async fn demo(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let DemoArgs {
        stack: args,
        stay,
        release,
        ..
    } = args;
    let profile = if release {
        Profile::Release
    } else {
        Profile::Debug
    };
    if args.handler.is_none() {
        let mut build = vec!["build", "-p", "handler", "--bin", "handler"];
        if release {
            build.push("--release");
        }
        eprintln!("building the handler (cargo {})…", build.join(" "));
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(&build)
                .current_dir(&args.app_root)
                .status()
                .context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build -p handler failed");
    }
    // The demo never needs the well-known port.
    let port = if args.host_port == 7071 {
        0
    } else {
        args.host_port
    };
    let app = app_spec(&args, port, &[profile])?;
    let stack = Stack::start(stack_options(&args)).await?;
    let outcome = async {
        let host = start_host(&stack, &app).await?;
        let outcome = devstack::demo::run_flow(&stack, &host).await;
        if stay && let Ok(o) = &outcome {
            print_outcome(o);
            println!("devstack stays up: Ctrl-C stops it");
            shutdown_signal().await;
        }
        host.stop().await;
        outcome
    }
    .await;
    stack.stop().await;
    let outcome = outcome?;
    if !stay {
        print_outcome(&outcome);
        println!(
            "(the page closes with the demo: `devstack demo --stay`, or `devstack up`, keeps it open)"
        );
    }
    Ok(if outcome.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn print_outcome(outcome: &devstack::demo::Outcome) {
    print!(
        "{}",
        devstack::report::render(
            &outcome.body,
            outcome.status,
            std::io::stdout().is_terminal()
        )
    );
    print!("{}", outcome.trace_lines());
}

async fn shutdown_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
