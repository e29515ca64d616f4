//! `devstack`: run the local Azure stand-ins.
//!
//! ```text
//! devstack up --env-file .devstack/env       # everything, on free ports
//! devstack up --fixed-ports --handler target/debug/handler
//! ```

use anyhow::Context;
use clap::{Parser, Subcommand};
use devstack::stack::{Ports, Stack, StackOptions};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where to write KEY=VALUE lines once everything is ready.
    #[arg(long, default_value = ".devstack/env")]
    env_file: PathBuf,
    /// Certificates, generated config and the Azurite install.
    #[arg(long, env = "DEVSTACK_HOME", default_value = ".devstack")]
    state_dir: PathBuf,
    /// Where Azurite is installed (kept between runs); default `<state-dir>/cache`.
    #[arg(long, env = "DEVSTACK_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Use the documented fixed ports instead of free ones
    /// (identity 41564, Key Vault 8443, Azurite 10000, app2 gate 8444).
    #[arg(long)]
    fixed_ports: bool,
    /// Do not start Azurite (no Node.js needed; no STORAGE_ACCOUNT_URL).
    #[arg(long)]
    no_azurite: bool,
    /// Seed secrets file: {"secrets":[{"name","value","contentType"}]}.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Also start this `handler` binary directly against the stack
    /// (FUNCTIONS_BASE_URL then points at it).
    #[arg(long)]
    handler: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("devstack: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut options = StackOptions::new(&args.state_dir);
    options.azurite = !args.no_azurite;
    options.seed_file = args.secrets;
    options.cache_dir = args.cache_dir;
    if args.fixed_ports {
        options.ports = Ports::fixed();
    }
    let stack = Stack::start(options).await?;

    let mut extra = vec![];
    let mut handler = None;
    if let Some(bin) = &args.handler {
        let (child, url) = start_handler(bin, &stack).await?;
        extra.push(("FUNCTIONS_BASE_URL".to_owned(), url));
        handler = Some(child);
    }
    stack.write_env_file(&args.env_file, &extra)?;
    tracing::info!(env_file = %args.env_file.display(), "devstack is ready");
    for (k, v) in stack.env().iter().chain(&extra) {
        if !k.ends_with("_HEADER") && !k.ends_with("_SECRET") {
            tracing::info!("  {k}={v}");
        }
    }

    let signal = shutdown_signal().await;
    tracing::info!(signal, "stopping devstack");
    if let Some(mut child) = handler {
        let _ = child.kill().await;
    }
    stack.stop().await;
    let _ = std::fs::remove_file(&args.env_file);
    tracing::info!("devstack stopped");
    Ok(())
}

async fn start_handler(
    bin: &PathBuf,
    stack: &Stack,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let port = devstack::free_port()?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.envs(stack.env())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    devstack::azurite::die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/")).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "handler did not answer GET / within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok((child, url))
}

async fn shutdown_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
