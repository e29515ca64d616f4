//! The report for a console: one line per check, then each failure's fix in
//! full. Colour only when asked (a terminal, and no `NO_COLOR`).

use super::{Check, Group, Report, Status};
use std::fmt::Write;

/// The report as text; `colour` adds ANSI colours to the marks.
pub fn human(report: &Report, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let mark = |status: Status| match status {
        Status::Passed => paint("32", "✔"),
        Status::Failed => paint("31", "✘"),
        Status::Skipped => paint("2", "–"),
    };
    let width = report
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "handler doctor {} · {} · selector {}",
        report.version,
        report.identity.source.as_str(),
        report.identity.selector.as_str()
    );
    for group in [Group::Environment, Group::Identity, Group::Target] {
        let _ = writeln!(
            out,
            "{}",
            match group {
                Group::Environment => "environment",
                Group::Identity => "identity endpoint",
                Group::Target => "targets",
            }
        );
        for check in report.checks.iter().filter(|c| c.group == group) {
            let _ = writeln!(
                out,
                "  {} {:<width$}  {}  {}",
                mark(check.status),
                check.name,
                check.found,
                paint("2", &format!("{:.1} ms", check.duration_ms)),
            );
        }
    }
    let failed: Vec<&Check> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        let _ = writeln!(out, "{}", paint("32", "ok: every check passed"));
        return out;
    }
    let _ = writeln!(out, "\n{} failed:", failed.len());
    for check in failed {
        let _ = writeln!(out, "\n{} {}", mark(check.status), check.name);
        if let Some(problem) = &check.problem {
            let _ = writeln!(out, "  {} ({})", problem.detail, problem.kind);
            if let Some(diagnosis) = problem.extensions.get("diagnosis") {
                if let Some(cause) = diagnosis.get("cause").and_then(|c| c.as_str()) {
                    let _ = writeln!(out, "  cause: {cause}");
                }
                if let Some(fix) = diagnosis.get("fix").and_then(|c| c.as_str()) {
                    let _ = writeln!(out, "  fix:   {fix}");
                }
            } else if let Some(hint) = &problem.hint {
                let _ = writeln!(out, "  fix:   {hint}");
            }
        }
    }
    out
}
