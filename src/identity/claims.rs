//! Reading a JWT's claims for display and diagnosis.
//!
//! The handler shows users what is *inside* the tokens it obtained (the safe
//! equivalent of pasting a token into jwt.ms). The signature is not checked here:
//! the token came straight from the identity endpoint, and the payload is only
//! displayed, never trusted for an authorization decision.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Decodes the payload (claims) of a compact JWT. Never returns the header or
/// signature. `None` when the value is not a JWT with a JSON object payload.
pub fn decode_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None; // a JWE has five parts; we only read signed tokens
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The claims that say who the caller is.
pub const PRINCIPAL_CLAIMS: &[&str] = &["oid", "appid", "azp", "tid", "xms_mirid"];
/// The claims that say what the token is for and how long.
pub const TOKEN_CLAIMS: &[&str] = &["aud", "iss", "roles", "exp", "ver"];

/// Who and what for, together: the claims worth showing for authorization questions.
pub fn authorization_claims(claims: &Map<String, Value>) -> Map<String, Value> {
    let mut shown = pick(claims, TOKEN_CLAIMS);
    shown.extend(pick(claims, PRINCIPAL_CLAIMS));
    shown
}

/// The named claims that are present, in the order given.
pub fn pick(claims: &Map<String, Value>, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| claims.get(*n).map(|v| ((*n).to_owned(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn decodes_payload() {
        let claims = decode_claims(&jwt(r#"{"aud":"api://x","roles":["A"]}"#)).unwrap();
        assert_eq!(claims["aud"], "api://x");
        assert_eq!(claims["roles"][0], "A");
    }

    #[test]
    fn rejects_non_jwts() {
        assert!(decode_claims("opaque-token").is_none());
        assert!(decode_claims("a.b").is_none());
        assert!(decode_claims(&jwt("[1,2]")).is_none());
        assert!(decode_claims("a.!!!.c").is_none());
        assert!(decode_claims("a.b.c.d.e").is_none());
    }
}
