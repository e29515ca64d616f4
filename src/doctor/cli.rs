//! `handler doctor`: the report in a console (Kudu, SSH, or a laptop with
//! devstack's env), from the same settings the server reads.

use super::{Options, Report};
use crate::configuration::Settings;
use crate::identity::UserAssignedId;
use crate::names::Resource;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "\
handler doctor: every managed-identity check in one run

usage: handler doctor [--json] [--resource R]... [--client-id ID | --object-id ID | --resource-id ID] [--timeout SECS]

  --json            the report as one JSON object (for scripts and support cases)
  --resource R      also get a token for R and show its claims (repeatable; any resource)
  --client-id ID    run every check as this user-assigned identity (or --object-id,
  --object-id ID      --resource-id), as /api/token's query parameters do
  --resource-id ID
  --timeout SECS    the most any one check may take (default 20)

It reads the app's settings (app settings, environment, handler.toml) and checks,
in order: the environment (identity source, selector, protocol, clock), a token
for every resource the app uses (shown as its deciding claims), and one harmless
call to every upstream, each failure with its diagnosis and fix.

Exit code: 0 when every check passed, 1 when any failed, 2 for bad arguments.

There is no --show-token, on purpose: a managed-identity token is a bearer
credential, and anyone who can read it can act as the app until it expires.
The report shows what decides access (aud, iss, oid, appid, tid, roles, exp)
and never a token, the identity header or a secret value.
";

/// What the arguments ask for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run { json: bool, options: Options },
    Help,
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.resources == other.resources
            && self.identity == other.identity
            && self.deadline == other.deadline
    }
}

/// Parses `handler doctor`'s arguments (after `doctor`).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut json = false;
    let mut options = Options::default();
    let mut selectors = vec![];
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--json" => json = true,
            "--resource" => {
                let r = value("--resource")?;
                options
                    .resources
                    .push(Resource::parse(&r).map_err(|e| format!("--resource {r:?}: {e}"))?);
            }
            "--client-id" => selectors.push(("client_id", value(arg)?)),
            "--object-id" => selectors.push(("object_id", value(arg)?)),
            "--resource-id" => selectors.push(("mi_res_id", value(arg)?)),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| format!("--timeout {v:?}: seconds, more than 0, at most 600"))?;
                options.deadline = Duration::from_secs_f64(secs);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    options.identity = match selectors.as_slice() {
        [] => None,
        [(kind, v)] => Some(UserAssignedId::parse(kind, v)?),
        _ => return Err("give at most one of --client-id, --object-id and --resource-id".into()),
    };
    Ok(Command::Run { json, options })
}

/// Runs the subcommand; the process exits with what this returns.
pub fn main(args: &[String]) -> ExitCode {
    let (json, options) = match parse(args) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run { json, options }) => (json, options),
        Err(e) => {
            eprintln!("handler doctor: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("handler doctor: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match Settings::load() {
        Ok(settings) => runtime.block_on(report(&settings, &options)),
        // Settings that stop the server (a bad or conflicting selector, say)
        // are the first failure, and the only one that can be known.
        Err(e) => Ok(Report::unusable_settings(&e.to_string())),
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("handler doctor: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let text = if json {
        serde_json::to_string_pretty(&report).expect("the report serializes") + "\n"
    } else {
        let colour = out.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        super::human(&report, colour)
    };
    let _ = out.write_all(text.as_bytes());
    ExitCode::from(report.exit_code())
}

/// The report, with the state the server would build from `settings`.
pub async fn report(settings: &Settings, options: &Options) -> Result<Report, String> {
    let state = crate::state::AppState::new(settings).map_err(|e| e.to_string())?;
    Ok(super::run(&state, options).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_or_say_why_not() {
        let Ok(Command::Run { json, options }) = parse(&args(&[
            "--json",
            "--resource",
            "https://management.azure.com",
            "--client-id",
            "5e29463d-71da-4fe0-8e69-999b57db23b0",
            "--timeout",
            "3",
        ])) else {
            panic!("valid arguments")
        };
        assert!(json);
        assert_eq!(
            options.resources[0].as_str(),
            "https://management.azure.com"
        );
        assert!(matches!(
            options.identity,
            Some(UserAssignedId::ClientId(_))
        ));
        assert_eq!(options.deadline, Duration::from_secs(3));
        assert_eq!(parse(&args(&["--help"])), Ok(Command::Help));
        for bad in [
            &["--show-token"][..],
            &["--resource"],
            &["--resource", "bad resource"],
            &["--client-id", "x"],
            &[
                "--client-id",
                "5e29463d-71da-4fe0-8e69-999b57db23b0",
                "--object-id",
                "5e29463d-71da-4fe0-8e69-999b57db23b0",
            ],
            &["--timeout", "0"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_that_stop_the_server_are_the_failed_settings_check() {
        let env = [
            ("AZURE_CLIENT_ID", "5e29463d-71da-4fe0-8e69-999b57db23b0"),
            (
                "MANAGED_IDENTITY_OBJECT_ID",
                "5e29463d-71da-4fe0-8e69-999b57db23b0",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let error = Settings::from_sources(None, env.into()).unwrap_err();
        let report = Report::unusable_settings(&error.to_string());
        assert_eq!(report.exit_code(), 1);
        let check = &report.checks[0];
        assert_eq!(
            (check.name.as_str(), check.status),
            ("settings", super::super::Status::Failed)
        );
        let text = super::super::human(&report, false);
        assert!(
            text.contains("AZURE_CLIENT_ID and MANAGED_IDENTITY_OBJECT_ID"),
            "{text}"
        );
    }

    #[test]
    fn help_says_why_there_is_no_show_token() {
        assert!(HELP.contains("no --show-token") && HELP.contains("act as the app"));
    }
}
