//! Names parsed once, at the edge, into types. A function turns what the
//! caller sent into these before anything else; the Azure clients accept
//! nothing else, so no client validates twice and none can be handed a raw
//! string by mistake.

use std::fmt;

/// Why a name was refused: the rule it breaks, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub &'static str);

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A Key Vault secret name: 1–127 characters of `0-9 a-z A-Z -`.
    SecretName
);
name_type!(
    /// A Key Vault secret version: 32 hexadecimal characters.
    SecretVersion
);
name_type!(
    /// A blob container: 3–63 of `a-z 0-9 -`, starting with a letter or digit,
    /// no `--`, not ending in `-`.
    ContainerName
);
name_type!(
    /// A blob name that is safe behind a URL (see [`BlobName::parse`]).
    BlobName
);
name_type!(
    /// A relative path on a downstream API (see [`ApiPath::parse`]).
    ApiPath
);
name_type!(
    /// A downstream API's name (see [`ApiName::parse`]).
    ApiName
);
name_type!(
    /// A token resource as Entra compares it (scheme and host in lower case,
    /// no trailing `/`).
    Resource
);

/// Key Vault's resource (tokens for `https://vault.azure.net/.default`).
pub const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";
/// Blob Storage's resource.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com";

impl SecretName {
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        if (1..=127).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidName(
                "a secret name is 1-127 characters of letters, digits and hyphens",
            ))
        }
    }
}

impl SecretVersion {
    pub fn parse(version: &str) -> Result<Self, InvalidName> {
        if version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(version.to_owned()))
        } else {
            Err(InvalidName("a secret version is 32 hexadecimal characters"))
        }
    }
}

impl ContainerName {
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let ok = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && !name.ends_with('-')
            && !name.contains("--");
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidName(
                "a container name is 3-63 lower-case letters, digits and single hyphens, starting with a letter or digit",
            ))
        }
    }
}

impl BlobName {
    /// Azure's rule (1–1024 characters, at most 254 segments) plus what is
    /// safe behind a URL: no empty, `.` or `..` segments, no control
    /// characters or backslashes, no trailing dot.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let ok = (1..=1024).contains(&name.chars().count())
            && name.split('/').count() <= 254
            && name
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && !name.chars().any(|c| c.is_control() || c == '\\')
            && !name.ends_with('.');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidName(
                "a blob name is 1-1024 characters in at most 254 non-empty '/'-separated segments, without '.' or '..' segments, backslashes, control characters or a trailing dot",
            ))
        }
    }
}

impl ApiPath {
    /// Relative, at most 2048 bytes, no scheme, no `.` or `..` segments, no
    /// backslashes or control characters, in its raw and its decoded form
    /// (`..%2F` must not slip through).
    pub fn parse(path: &str) -> Result<Self, InvalidName> {
        let safe = |p: &str| {
            !p.contains("://")
                && !p.starts_with('/')
                && !p.chars().any(|c| c.is_control() || c == '\\')
                && p.split('/').all(|s| s != ".." && s != ".")
        };
        if path.len() <= 2048 && safe(path) && safe(&percent_decode(path)) {
            Ok(Self(path.to_owned()))
        } else {
            Err(InvalidName(
                "the API path must be relative, without '.' or '..' segments, backslashes or control characters",
            ))
        }
    }
}

impl ApiName {
    /// 1–32 of `a-z 0-9 _`, starting with a letter: a name that is the same
    /// in a TOML table, an app setting (`DOWNSTREAM_APIS__<NAME>__…`) and a route.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let valid = (1..=32).contains(&name.len())
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidName(
                "an API name is 1-32 of a-z, 0-9 and _, starting with a letter",
            ))
        }
    }
}

impl PartialOrd for ApiName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ApiName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// Longest resource accepted: generous for an App ID URI, short enough for a URL.
pub const MAX_RESOURCE_LEN: usize = 512;

impl Resource {
    /// 1–512 characters of letters, digits and `- _ . : /` (the scope
    /// character rule Azure.Identity applies), normalized as Entra compares.
    pub fn parse(resource: &str) -> Result<Self, InvalidName> {
        let resource = resource.trim();
        let valid = !resource.is_empty()
            && resource.len() <= MAX_RESOURCE_LEN
            // A fold, not `all`: with no early exit it runs many bytes at a time.
            && resource.bytes().fold(true, |valid, b| {
                valid & (b.is_ascii_alphanumeric() | matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
            });
        if valid {
            Ok(Self(crate::identity::normalize_resource(resource)))
        } else {
            Err(InvalidName(
                "resource must be 1-512 characters of letters, digits and - _ . : /",
            ))
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(
        format!("p={}", s.replace('+', "%2B").replace('&', "%26")).as_bytes(),
    )
    .next()
    .map(|(_, v)| v.into_owned())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_and_versions() {
        assert!(SecretName::parse("app1-demo-secret").is_ok());
        assert!(SecretName::parse(&"a".repeat(127)).is_ok());
        for bad in ["", "a_b", "a b", "a/b", &"a".repeat(128)] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
        assert!(SecretVersion::parse("0123456789abcdef0123456789ABCDEF").is_ok());
        assert!(SecretVersion::parse("latest").is_err());
    }

    #[test]
    fn container_names() {
        for good in ["abc", "audit", "a-b-c", "0day", &"a".repeat(63)] {
            assert!(ContainerName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "$root",
        ] {
            assert!(ContainerName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_names() {
        for good in ["a", "dir/file.txt", "ünïcode/名前.bin", &"a".repeat(1024)] {
            assert!(BlobName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "a//b",
            "/a",
            "a/",
            "a\\b",
            "a\u{0}b",
            "trailing.",
            &"a".repeat(1025),
        ] {
            assert!(BlobName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BlobName::parse(&vec!["s"; 255].join("/")).is_err());
    }

    #[test]
    fn app2_paths() {
        assert!(ApiPath::parse("api/whoami").is_ok());
        assert!(ApiPath::parse("").is_ok());
        for bad in [
            "../x",
            "a/../../b",
            "/abs",
            "http://evil/x",
            "a\\b",
            "a\nb",
            "./a",
            "..%2Fx",
        ] {
            assert!(ApiPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resources_are_normalized() {
        assert_eq!(
            Resource::parse(" HTTPS://Vault.Azure.NET/ ")
                .unwrap()
                .as_str(),
            KEY_VAULT_RESOURCE
        );
        for bad in ["", "https://vault.azure.net\nx", &"a".repeat(513)] {
            assert!(Resource::parse(bad).is_err(), "{bad:?}");
        }
    }
}
