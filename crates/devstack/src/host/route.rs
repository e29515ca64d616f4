//! ASP.NET Core route templates, as function.json `route` uses them:
//! literals (case-insensitive), `{p}`, `{p?}`, `{p=default}`, constraints
//! (`{id:int}`, `{c:alpha}`, `{g:guid}`, …) and a final catch-all `{*rest}`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param {
        name: String,
        constraints: Vec<String>,
        optional: bool,
        default: Option<String>,
    },
    CatchAll(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    segments: Vec<Segment>,
}

/// Route values: `None` for an optional parameter that was absent (the host
/// sends it as `null` in `Params`).
pub type RouteValues = BTreeMap<String, Option<String>>;

impl RouteTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut segments = vec![];
        let parts: Vec<&str> = template
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(name) = inner.strip_prefix('*').or_else(|| inner.strip_prefix("**")) {
                    if i != parts.len() - 1 {
                        return Err(format!(
                            "catch-all {{*{name}}} must be the last segment of {template:?}"
                        ));
                    }
                    Segment::CatchAll(name.split(':').next().unwrap_or(name).to_owned())
                } else {
                    let (spec, default) = match inner.split_once('=') {
                        Some((s, d)) => (s, Some(d.to_owned())),
                        None => (inner, None),
                    };
                    let optional = spec.ends_with('?');
                    let spec = spec.trim_end_matches('?');
                    let mut pieces = spec.split(':');
                    let name = pieces.next().unwrap_or_default().to_owned();
                    if name.is_empty() {
                        return Err(format!("empty parameter name in {template:?}"));
                    }
                    Segment::Param {
                        name,
                        constraints: pieces.map(|c| c.to_ascii_lowercase()).collect(),
                        optional,
                        default,
                    }
                }
            } else if part.contains('{') || part.contains('}') {
                return Err(format!(
                    "complex segment {part:?} is not supported by the stand-in"
                ));
            } else {
                Segment::Literal(part.to_ascii_lowercase())
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// Matches a path relative to the route prefix (no leading slash needed).
    pub fn matches(&self, path: &str) -> Option<RouteValues> {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut values = RouteValues::new();
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => {
                    if !parts.get(i)?.eq_ignore_ascii_case(lit) {
                        return None;
                    }
                    i += 1;
                }
                Segment::Param {
                    name,
                    constraints,
                    optional,
                    default,
                } => match parts.get(i) {
                    Some(raw) => {
                        let value = percent_decode(raw);
                        if !constraints.iter().all(|c| satisfies(c, &value)) {
                            return None;
                        }
                        values.insert(name.clone(), Some(value));
                        i += 1;
                    }
                    None if *optional => {
                        values.insert(name.clone(), None);
                    }
                    None => {
                        values.insert(name.clone(), Some(default.clone()?));
                    }
                },
                Segment::CatchAll(name) => {
                    let rest = parts[i.min(parts.len())..].join("/");
                    values.insert(
                        name.clone(),
                        if rest.is_empty() {
                            None
                        } else {
                            Some(percent_decode(&rest))
                        },
                    );
                    i = parts.len();
                }
            }
        }
        (i == parts.len()).then_some(values)
    }
}

fn satisfies(constraint: &str, value: &str) -> bool {
    let name = constraint.split('(').next().unwrap_or(constraint);
    match name {
        "int" => value.parse::<i32>().is_ok(),
        "long" => value.parse::<i64>().is_ok(),
        "bool" => value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"),
        "alpha" => !value.is_empty() && value.chars().all(|c| c.is_ascii_alphabetic()),
        "guid" => crate::world_guid(value),
        "double" | "float" | "decimal" => value.parse::<f64>().is_ok(),
        // Unknown constraints (minlength(…), regex(…)) are not enforced here.
        _ => true,
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, p: &str) -> Option<RouteValues> {
        RouteTemplate::parse(t).unwrap().matches(p)
    }

    #[test]
    fn case_10_int_constraint_and_optional() {
        let v = m("items/{id:int}/{name?}", "items/42").unwrap();
        assert_eq!(v["id"].as_deref(), Some("42"));
        assert_eq!(v["name"], None);
        assert!(m("items/{id:int}/{name?}", "items/abc").is_none());
        assert_eq!(
            m("items/{id:int}/{name?}", "ITEMS/7/x").unwrap()["name"].as_deref(),
            Some("x")
        );
        assert!(m("items/{id:int}/{name?}", "items/7/x/y").is_none());
    }

    #[test]
    fn catch_all_matches_zero_or_more_segments() {
        assert_eq!(
            m("blobs/{container}/{*name}", "blobs/c/a/b.txt").unwrap()["name"].as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(
            m("blobs/{container}/{*name}", "blobs/c").unwrap()["name"],
            None
        );
        assert!(m("blobs/{container}/{*name}", "blobs").is_none());
        assert_eq!(m("app2/{*path}", "app2").unwrap()["path"], None);
    }

    #[test]
    fn constraints_and_defaults() {
        assert!(m("x/{c:alpha}", "x/abc").is_some());
        assert!(m("x/{c:alpha}", "x/ab1").is_none());
        assert!(m("x/{g:guid}", "x/5e29463d-71da-4fe0-8e69-999b57db23b0").is_some());
        assert!(m("x/{g:guid}", "x/nope").is_none());
        assert_eq!(m("x/{p=def}", "x").unwrap()["p"].as_deref(), Some("def"));
        assert_eq!(m("x/{p}", "x/a%20b").unwrap()["p"].as_deref(), Some("a b"));
        assert!(RouteTemplate::parse("{*a}/b").is_err());
    }
}
