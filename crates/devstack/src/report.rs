//! Rendering `POST /api/flow`'s step report for a terminal.

use serde_json::Value;

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One line per step, then the failure's explanation if there is one.
pub fn render(body: &Value, status: u16, color: bool) -> String {
    let mut out = format!("app1 → app2 reference flow: POST /api/flow → {status}\n");
    for step in body["steps"].as_array().into_iter().flatten() {
        let ok = step["ok"] == true;
        let d = &step["detail"];
        let summary = if !ok {
            let detail = s(&d["detail"]);
            let first = detail.lines().next().unwrap_or_default();
            if first.chars().count() > 160 {
                format!("{}…", first.chars().take(160).collect::<String>())
            } else {
                first.to_owned()
            }
        } else {
            match step["name"].as_str() {
                Some("keyvault") => format!(
                    "read {} (version {}…, updated {}) as {} {}; token aud {} oid {}",
                    s(&d["secret"]["name"]),
                    s(&d["secret"]["version"])
                        .chars()
                        .take(8)
                        .collect::<String>(),
                    s(&d["secret"]["updated"]),
                    s(&d["identity"]["source"]),
                    s(&d["identity"]["selector"]),
                    s(&d["token_claims"]["aud"]),
                    s(&d["token_claims"]["oid"]),
                ),
                Some("app2") => format!(
                    "app2 saw appid {} oid {} roles {}; token aud {}",
                    s(&d["app2_view"]["app_id"]),
                    s(&d["app2_view"]["object_id"]),
                    s(&d["app2_view"]["roles"]),
                    s(&d["token_claims"]["aud"]),
                ),
                Some("partner") => format!(
                    "partner API (tenant {}) saw appid {} roles {}; the assertion was sub {} aud {}, no secret",
                    s(&d["partner_view"]["tenant_id"]),
                    s(&d["partner_view"]["app_id"]),
                    s(&d["partner_view"]["roles"]),
                    s(&d["assertion_claims"]["sub"]),
                    s(&d["assertion_claims"]["aud"]),
                ),
                Some("audit-write") => format!(
                    "wrote {}/{} ({} bytes)",
                    s(&d["container"]),
                    s(&d["blob"]),
                    s(&d["bytes"])
                ),
                Some("audit-read") => format!("read it back: matches = {}", s(&d["matches"])),
                _ => d.to_string(),
            }
        };
        let mark = if ok {
            paint("✔", "32", color)
        } else {
            paint("✘", "31", color)
        };
        out.push_str(&format!(
            "  {mark} {:<12} {:>8} ms  {summary}\n",
            s(&step["name"]),
            s(&step["duration_ms"])
        ));
        if !ok {
            let diagnosed = d.get("diagnosis").is_some_and(|v| !v.is_null());
            // With a diagnosis, the hint is its fix: print it once, below.
            let keys: &[&str] = if diagnosed {
                &["stage", "upstream_status", "type"]
            } else {
                &["stage", "upstream_status", "type", "hint"]
            };
            for key in keys {
                if !d[*key].is_null() {
                    out.push_str(&format!("      {key}: {}\n", s(&d[*key])));
                }
            }
            if let Some(diagnosis) = d.get("diagnosis").filter(|v| !v.is_null()) {
                for key in ["cause", "fix"] {
                    if !diagnosis[key].is_null() {
                        out.push_str(&format!("      {key}: {}\n", s(&diagnosis[key])));
                    }
                }
            }
        }
    }
    if body["steps"].as_array().is_none_or(|a| a.is_empty()) {
        out.push_str(&format!("  {}\n", body));
    }
    let verdict = if body["ok"] == true {
        paint("ok: every step passed", "32;1", color)
    } else {
        paint("failed: see the step marked ✘", "31;1", color)
    };
    out.push_str(&verdict);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_failures_with_their_explanation() {
        let body = json!({"ok": false, "steps": [
            {"name": "keyvault", "ok": false, "duration_ms": 3.2, "detail": {
                "detail": "keyvault answered 403 (ForbiddenByRbac)", "stage": "keyvault", "upstream_status": 403,
                "hint": "assign a role", "diagnosis": {"cause": "no role", "fix": "az role assignment create …"}
            }}
        ]});
        let text = render(&body, 502, false);
        assert!(text.contains("✘ keyvault"));
        assert!(text.contains("upstream_status: 403"));
        assert!(text.contains("fix: az role assignment create"));
        assert!(text.ends_with("failed: see the step marked ✘\n"));
        assert!(!render(&body, 502, true).is_empty());
    }
}
