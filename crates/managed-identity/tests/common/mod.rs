//! Shared by the protocol and timing tests: token bodies and fixed ids.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const IDENTITY_HEADER: &str = "test-identity-header-5b1f";
pub const UA_CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SYSTEM_OID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// A JWT-shaped token with the given claims; the signature is a marker.
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.SIGNATURE-MUST-NOT-LEAK",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A successful App Service response for `resource`, valid for `lifetime` seconds.
pub fn token_body(resource: &str, lifetime: i64) -> Value {
    let exp = now() + lifetime;
    json!({
        "access_token": jwt(json!({"aud": resource, "oid": SYSTEM_OID, "exp": exp})),
        "expires_on": exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": "app1-client"
    })
}
