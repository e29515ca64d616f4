//! One normalized request path for every decision and for dispatch.
//!
//! A stand-in that decides on one form of a path (an auth rule, a route) and
//! forwards another lets `/api/health/%2e%2e/whoami` pass as `/api/health` and
//! arrive as `/api/whoami`: URL parsers (reqwest's among them) treat `%2e%2e`
//! as `..`. So the host stand-in and the gate normalize first, per RFC 3986
//! (decode percent-encoded unreserved characters, §6.2.2.2; remove dot
//! segments, §5.2.4), as Kestrel does, then decide and forward on the result.

/// The normalized form of an absolute path (`/a/./b/../c` → `/a/c`).
pub fn normalize(path: &str) -> String {
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// Decodes `%XX` only where XX is an unreserved character (ALPHA / DIGIT /
/// `-` / `.` / `_` / `~`); every other escape (`%2F` among them) stays.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            && (b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            out.push(b as char);
            i += 3;
            continue;
        }
        // Copy one whole UTF-8 character.
        let ch = path[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn removes_dot_segments_in_any_encoding() {
        for (raw, want) in [
            ("/api/health", "/api/health"),
            ("/api/secrets/../health", "/api/health"),
            ("/api/health/%2e%2e/whoami", "/api/whoami"),
            ("/api/health/%2E%2E/whoami", "/api/whoami"),
            ("/api/health/.%2e/whoami", "/api/whoami"),
            ("/api/./whoami", "/api/whoami"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/api/blobs/a/..", "/api/blobs/"),
            ("/api/%7Euser", "/api/~user"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }

    #[test]
    fn keeps_reserved_escapes() {
        assert_eq!(normalize("/api/blobs/c/a%2Fb"), "/api/blobs/c/a%2Fb");
        assert_eq!(normalize("/api/blobs/c/%2E%2E%2Fx"), "/api/blobs/c/..%2Fx");
        assert_eq!(normalize("/api/x%"), "/api/x%");
        assert_eq!(normalize("/api/x%2"), "/api/x%2");
        assert_eq!(normalize("/名前/%zz"), "/名前/%zz");
    }
}
