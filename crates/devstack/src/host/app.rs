//! Reading a Function App the way the host does: host.json, local.settings.json
//! and one `function.json` per immediate sub-folder.

use super::route::RouteTemplate;
use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `customHandler` and the other host.json settings the stand-in honours.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub executable: String,
    pub working_directory: String,
    pub worker_directory: String,
    pub arguments: Vec<String>,
    pub forwarding: bool,
    /// `customHandler.enableProxyingHttpRequest` (that spelling only: the
    /// host ignores `enableHttpProxyingRequest` and `http.enableProxying`).
    pub proxying: bool,
    pub route_prefix: String,
    pub function_timeout: Option<Duration>,
    pub initialization_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

/// One discovered function.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub auth_level: AuthLevel,
    /// Upper-case methods; empty means every method.
    pub methods: Vec<String>,
    pub route: RouteTemplate,
    pub route_text: String,
    /// Exactly one httpTrigger in and one http out: eligible for forwarding.
    pub http_in_and_out: bool,
    /// The http output's name (`res` or `$return`), if any.
    pub http_output: Option<String>,
    pub trigger_name: String,
}

/// The whole app.
#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    pub host: HostConfig,
    pub functions: Vec<Function>,
    /// `local.settings.json` `Values`.
    pub values: BTreeMap<String, String>,
    /// Functions that were skipped, with the reason (the host records these as errors).
    pub errors: Vec<(String, String)>,
}

/// `hh:mm:ss` (or `d.hh:mm:ss`) as in host.json.
pub fn parse_timespan(s: &str) -> Option<Duration> {
    let (days, rest) = match s.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = parts.as_slice() else {
        return None;
    };
    Some(Duration::from_secs(days * 86400 + h * 3600 + m * 60 + sec))
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.eq_ignore_ascii_case("host")
}

impl FunctionApp {
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("app root {}", root.display()))?;
        let host_json: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("host.json")).context("reading host.json")?,
        )
        .context("host.json is not JSON")?;
        if host_json["version"] != "2.0" {
            bail!("host.json must have \"version\": \"2.0\"");
        }
        let section = host_json
            .get("customHandler")
            .or_else(|| host_json.get("httpWorker"))
            .context("host.json has no customHandler section")?;
        let description = section
            .get("description")
            .context("Missing worker Description.")?;
        let executable = description["defaultExecutablePath"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if executable.is_empty() {
            bail!("WorkerDescription DefaultExecutablePath cannot be empty");
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let host = HostConfig {
            executable,
            working_directory: text(&description["workingDirectory"]),
            worker_directory: text(&description["workerDirectory"]),
            arguments: description["arguments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            // A legacy httpWorker section always forwards.
            forwarding: section["enableForwardingHttpRequest"]
                .as_bool()
                .unwrap_or(false)
                || host_json.get("customHandler").is_none(),
            proxying: host_json["customHandler"]["enableProxyingHttpRequest"]
                .as_bool()
                .unwrap_or(false),
            route_prefix: host_json["extensions"]["http"]["routePrefix"]
                .as_str()
                .unwrap_or("api")
                .trim_matches('/')
                .to_owned(),
            function_timeout: host_json["functionTimeout"]
                .as_str()
                .and_then(parse_timespan),
            initialization_timeout: section["initializationTimeout"]
                .as_str()
                .and_then(parse_timespan)
                .unwrap_or(Duration::from_secs(30)),
        };

        let values = match std::fs::read_to_string(root.join("local.settings.json")) {
            Err(_) => BTreeMap::new(),
            Ok(text) => {
                let doc: Value =
                    serde_json::from_str(&text).context("local.settings.json is not JSON")?;
                // Core Tools treats a missing IsEncrypted as true.
                if doc["IsEncrypted"].as_bool().unwrap_or(true) {
                    bail!(
                        "local.settings.json has IsEncrypted true (or missing); write \"IsEncrypted\": false"
                    );
                }
                doc["Values"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };

        let mut functions = vec![];
        let mut errors = vec![];
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("function.json").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            match Self::function(&name, &dir) {
                Ok(f) => functions.push(f),
                Err(e) => errors.push((name, e.to_string())),
            }
        }
        Ok(Self {
            root,
            host,
            functions,
            values,
            errors,
        })
    }

    fn function(name: &str, dir: &Path) -> anyhow::Result<Function> {
        if !valid_function_name(name) {
            bail!("'{name}' is not a valid function name");
        }
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("function.json"))?)?;
        let bindings = doc["bindings"]
            .as_array()
            .filter(|b| !b.is_empty())
            .context("bindings must be a non-empty array")?;
        let is = |b: &Value, dir: &str, ty: &str| {
            b["direction"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(dir))
                && b["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(ty))
        };
        let inputs = bindings.iter().filter(|b| b["direction"] == "in").count();
        let outputs = bindings.iter().filter(|b| b["direction"] == "out").count();
        let trigger = bindings
            .iter()
            .find(|b| is(b, "in", "httpTrigger"))
            .context("no httpTrigger binding")?;
        let http_output = bindings
            .iter()
            .find(|b| is(b, "out", "http"))
            .and_then(|b| b["name"].as_str().map(str::to_owned));
        let route_text = trigger["route"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(name)
            .to_owned();
        Ok(Function {
            name: name.to_owned(),
            auth_level: match trigger["authLevel"]
                .as_str()
                .unwrap_or("function")
                .to_ascii_lowercase()
                .as_str()
            {
                "anonymous" => AuthLevel::Anonymous,
                "admin" => AuthLevel::Admin,
                _ => AuthLevel::Function,
            },
            methods: trigger["methods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_ascii_uppercase))
                .collect(),
            route: RouteTemplate::parse(&route_text).map_err(anyhow::Error::msg)?,
            route_text,
            http_in_and_out: inputs == 1 && outputs == 1 && http_output.is_some(),
            http_output,
            trigger_name: trigger["name"].as_str().unwrap_or("req").to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_timespan("1.02:00:01"),
            Some(Duration::from_secs(86400 + 7201))
        );
        assert_eq!(parse_timespan("-1"), None);
    }

    #[test]
    fn function_names() {
        assert!(valid_function_name("health"));
        assert!(valid_function_name("My_Func-2"));
        assert!(!valid_function_name("2func"));
        assert!(!valid_function_name("host"));
        assert!(!valid_function_name("a.b"));
    }
}
