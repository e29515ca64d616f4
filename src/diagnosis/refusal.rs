//! Why an API refused a bearer token, read from what it said: app2's own
//! problem `detail`, or the `error_description` of EasyAuth's
//! `WWW-Authenticate` (RFC 6750). Both our validator's texts and
//! Microsoft.IdentityModel's `IDX` codes (what EasyAuth logs) are understood.

/// The reason a token was refused, as far as the API said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The API could not fetch its issuer's signing keys: the token may be fine.
    KeysUnavailable,
    /// The signing key is unknown, the signature bad, or the token malformed.
    Signature,
    /// The issuer is not one the API trusts.
    Issuer {
        found: Option<String>,
    },
    /// The audience is not one the API accepts.
    Audience {
        found: Option<String>,
        expected: Vec<String>,
    },
    Expired,
    NotYetValid,
    /// No bearer token arrived: something on the way dropped `Authorization`.
    Missing,
    /// The API gave no reason.
    Unstated,
}

/// Reads the reason out of `said` (the refusal's texts, joined).
pub fn read(said: &str) -> TokenRefusal {
    let lower = said.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&["could not fetch signing keys", "idx20803", "idx20804"]) {
        TokenRefusal::KeysUnavailable
    } else if has(&["is expired", "idx10223"]) {
        TokenRefusal::Expired
    } else if has(&["not valid yet", "idx10222"]) {
        TokenRefusal::NotYetValid
    } else if has(&[
        "signing key",
        "signature",
        "well-formed",
        "algorithm",
        "idx10501",
        "idx10503",
        "idx10511",
    ]) {
        // Before the issuer: "signing key … is not in the issuer's JWKS".
        TokenRefusal::Signature
    } else if has(&["audience", "idx10214"]) {
        TokenRefusal::Audience {
            found: between(said, "audience ", " is not accepted"),
            expected: between(said, "(expected one of ", ")")
                .map(|list| list.split(", ").map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    } else if has(&["issuer", "idx10205"]) {
        TokenRefusal::Issuer {
            found: between(said, "issuer ", " is not accepted"),
        }
    } else if has(&["no bearer token"]) {
        TokenRefusal::Missing
    } else {
        TokenRefusal::Unstated
    }
}

/// The text between `start` and the next `end` in `s`.
fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(rest[..rest.find(end)?].to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_validators_texts() {
        assert_eq!(
            read("the bearer token was rejected: signing key aAqV is not in the issuer's JWKS"),
            TokenRefusal::Signature
        );
        assert_eq!(
            read(
                "the bearer token was rejected: could not fetch signing keys: error sending request"
            ),
            TokenRefusal::KeysUnavailable
        );
        assert_eq!(
            read("the bearer token was rejected: the token is expired"),
            TokenRefusal::Expired
        );
        assert_eq!(
            read("the bearer token was rejected: the token is not valid yet"),
            TokenRefusal::NotYetValid
        );
        assert_eq!(
            read(
                "the bearer token was rejected: audience https://graph.microsoft.com is not accepted (expected one of api://c2, c2)"
            ),
            TokenRefusal::Audience {
                found: Some("https://graph.microsoft.com".into()),
                expected: vec!["api://c2".into(), "c2".into()],
            }
        );
        assert_eq!(
            read(
                "the bearer token was rejected: issuer https://sts.windows.net/t9/ is not accepted"
            ),
            TokenRefusal::Issuer {
                found: Some("https://sts.windows.net/t9/".into())
            }
        );
        assert_eq!(
            read("no bearer token: app2 validates the caller's access token itself"),
            TokenRefusal::Missing
        );
        assert_eq!(
            read("You do not have permission to view this directory or page."),
            TokenRefusal::Unstated
        );
    }

    #[test]
    fn reads_identity_model_codes() {
        assert!(matches!(
            read("IDX10214: Audience validation failed. Audiences: 'x'."),
            TokenRefusal::Audience { .. }
        ));
        assert_eq!(
            read("IDX10223: Lifetime validation failed. The token is expired."),
            TokenRefusal::Expired
        );
        assert_eq!(
            read("IDX10503: Signature validation failed."),
            TokenRefusal::Signature
        );
        assert_eq!(
            read("IDX20803: Unable to obtain configuration from: 'https://login…'"),
            TokenRefusal::KeysUnavailable
        );
    }
}
