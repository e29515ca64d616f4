//! The Function App files: host.json and every function.json validate against
//! the official SchemaStore schemas (draft-07, see ../shared/schemas), follow
//! the host's own rules, and every route they declare is served by the handler.

use crate::helpers::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema(name: &str) -> jsonschema::Validator {
    let shared = root().join("../shared/schemas").join(name);
    let path = if shared.exists() {
        shared
    } else {
        root().join("tests/schemas").join(name)
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the official schemas live in ../shared/schemas)",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).unwrap();
    // function.json declares draft-04 but uses `const`: validate with draft-07.
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
        .unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Function folders: immediate sub-folders holding a function.json.
fn functions() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(root())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("function.json").is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                json(&p.join("function.json")),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn host_json_validates_and_sets_what_the_handler_needs() {
    let host = json(&root().join("host.json"));
    assert_eq!(
        errors(&schema("host.schema.json"), &host),
        Vec::<String>::new()
    );
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    // Proxying (current hosts), with forwarding beside it for older hosts
    // that ignore the new key.
    assert_eq!(host["customHandler"]["enableProxyingHttpRequest"], true);
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["extensions"]["http"]["routePrefix"],
        handler::functions::ROUTE_PREFIX
    );
}

#[test]
fn host_json_has_none_of_the_proxy_misspellings_the_host_ignores() {
    let text = std::fs::read_to_string(root().join("host.json")).unwrap();
    let host: Value = serde_json::from_str(&text).unwrap();
    let custom = &host["customHandler"];
    assert!(custom.get("enableHttpProxyingRequest").is_none());
    assert!(custom["http"].get("enableProxying").is_none());
    for misspelt in ["enableHttpProxyingRequest", "enableProxying\""] {
        assert!(!text.contains(misspelt), "{misspelt} in host.json");
    }
}

#[test]
fn every_function_json_validates_and_follows_host_rules() {
    let validator = schema("function.schema.json");
    let found = functions();
    assert_eq!(
        found.len(),
        handler::functions::ALL.len(),
        "one folder per function"
    );
    for (name, doc) in &found {
        assert_eq!(errors(&validator, doc), Vec::<String>::new(), "{name}");
        let mut chars = name.chars();
        assert!(
            chars.next().unwrap().is_ascii_alphabetic()
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name}"
        );
        let bindings = doc["bindings"].as_array().unwrap();
        assert_eq!(
            bindings.len(),
            2,
            "{name}: only HTTP in and out, so the host forwards it"
        );
        assert_eq!(bindings[0]["type"], "httpTrigger");
        assert_eq!(bindings[1]["type"], "http");
        assert!(
            handler::functions::by_name(name).is_some(),
            "{name} has code"
        );
        let auth = bindings[0]["authLevel"].as_str().unwrap();
        assert_eq!(
            auth,
            match name.as_str() {
                "health" => "anonymous",
                // It shows the configuration: the master key only.
                "doctor" => "admin",
                _ => "function",
            },
            "{name}"
        );
    }
}

/// A concrete path for a route template (`{name}` → sample values).
fn sample_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return seg.to_owned();
            };
            let name = inner
                .trim_start_matches('*')
                .split([':', '?', '='])
                .next()
                .unwrap();
            match name {
                "version" => "0123456789abcdef0123456789abcdef".to_owned(),
                "container" => "samples".to_owned(),
                "name" => "sample-name".to_owned(),
                "path" => "api/whoami".to_owned(),
                other => other.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_declared_route_and_method_is_served() {
    let app = spawn_app().await;
    for (name, doc) in functions() {
        let trigger = &doc["bindings"][0];
        let route = trigger["route"].as_str().unwrap_or(&name);
        let path = format!(
            "/{}/{}",
            handler::functions::ROUTE_PREFIX,
            sample_path(route)
        );
        for method in trigger["methods"].as_array().unwrap() {
            let method = reqwest::Method::from_bytes(
                method.as_str().unwrap().to_ascii_uppercase().as_bytes(),
            )
            .unwrap();
            let res = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert!(
                !body.contains("TROUBLESHOOTING.md#not-found"),
                "{method} {path} ({name}) is not served: {status} {body}"
            );
        }
    }
}

#[test]
fn every_handler_route_is_declared_in_its_function_json() {
    // The other direction of the test above: nothing the handler routes is
    // missing from (or wider than) the function.json the host reads.
    let declared: std::collections::HashMap<String, Value> = functions().into_iter().collect();
    for spec in handler::functions::ALL {
        let doc = declared
            .get(spec.name)
            .unwrap_or_else(|| panic!("{} has no function.json", spec.name));
        let trigger = &doc["bindings"][0];
        let template = devstack::host::route::RouteTemplate::parse(
            trigger["route"].as_str().unwrap_or(spec.name),
        )
        .unwrap();
        let methods: Vec<String> = trigger["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_ascii_uppercase())
            .collect();
        for (method, route) in spec.routes {
            let relative = route
                .strip_prefix(&format!("/{}/", handler::functions::ROUTE_PREFIX))
                .unwrap_or_else(|| panic!("{route} lacks the route prefix"));
            // actix's `{x:.*}` is the host's `{*x}`.
            let path = sample_path(&relative.replace(":.*}", "}"));
            assert!(
                template.matches(&path).is_some(),
                "{method} {route} ({}) is not matched by its function.json route",
                spec.name
            );
            assert!(
                methods.iter().any(|m| m == method),
                "{method} {route} is not in {}'s function.json methods {methods:?}",
                spec.name
            );
        }
    }
    assert_eq!(
        declared.len(),
        handler::functions::ALL.len(),
        "a function.json without a handler function"
    );
}
