//! How a user-assigned managed identity is named in a token request.

use std::fmt;

/// Selects a user-assigned identity. With none, the endpoint issues tokens for
/// the app's system-assigned identity.
///
/// The three forms are interchangeable on the 2019-08-01 protocol; the legacy
/// 2017-09-01 protocol only knows client ids.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserAssignedId {
    /// The identity's client (application) id, as in `AZURE_CLIENT_ID`.
    ClientId(String),
    /// The identity's object (principal) id.
    ObjectId(String),
    /// The identity's ARM resource id
    /// (`/subscriptions/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`).
    ResourceId(String),
}

/// How an identity is selected: the system-assigned one, or a user-assigned
/// one by one of its ids. Serialized in snake_case (`client_id`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SelectorKind {
    /// No selector: the app's system-assigned identity.
    SystemAssigned,
    /// By client (application) id.
    ClientId,
    /// By object (principal) id.
    ObjectId,
    /// By ARM resource id.
    ResourceId,
}

impl SelectorKind {
    /// `system_assigned`, `client_id`, `object_id` or `resource_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SystemAssigned => "system_assigned",
            Self::ClientId => "client_id",
            Self::ObjectId => "object_id",
            Self::ResourceId => "resource_id",
        }
    }

    /// The kind of `identity`, or system-assigned for none.
    pub fn of(identity: Option<&UserAssignedId>) -> Self {
        identity.map_or(Self::SystemAssigned, UserAssignedId::kind)
    }
}

impl fmt::Display for SelectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl UserAssignedId {
    /// The selector's kind.
    pub fn kind(&self) -> SelectorKind {
        match self {
            Self::ClientId(_) => SelectorKind::ClientId,
            Self::ObjectId(_) => SelectorKind::ObjectId,
            Self::ResourceId(_) => SelectorKind::ResourceId,
        }
    }

    /// The selector's value. Ids are not secrets, so they may be logged and shown.
    pub fn value(&self) -> &str {
        match self {
            Self::ClientId(v) | Self::ObjectId(v) | Self::ResourceId(v) => v,
        }
    }

    /// Parses a selector from its `kind` and value, checking the value's shape so
    /// a typo is reported before any request is made.
    pub fn parse(kind: &str, value: &str) -> Result<Self, String> {
        let value = value.trim();
        match kind {
            "client_id" | "object_id" => {
                if !is_guid(value) {
                    return Err(format!("{kind} must be a GUID, got {value:?}"));
                }
                Ok(if kind == "client_id" {
                    Self::ClientId(value.to_owned())
                } else {
                    Self::ObjectId(value.to_owned())
                })
            }
            "resource_id" | "mi_res_id" => {
                if !is_user_assigned_resource_id(value) {
                    return Err(format!(
                        "{kind} must be an ARM id of the form /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>, got {value:?}"
                    ));
                }
                Ok(Self::ResourceId(value.to_owned()))
            }
            other => Err(format!("unknown identity selector {other:?}")),
        }
    }
}

/// More than one of the settings that select a user-assigned identity is set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} are all set, but a user-assigned identity is chosen by at most one of them; remove all but one",
    names.join(" and ")
)]
pub struct ConflictingSelectors {
    /// The names of the settings that are set.
    pub names: Vec<&'static str>,
}

/// A selector setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorSettingError {
    /// More than one selector is set.
    #[error(transparent)]
    Conflicting(#[from] ConflictingSelectors),
    /// The one selector set is malformed.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl UserAssignedId {
    /// The identity selected by the conventional settings, each given as
    /// `(setting name, value)`: `AZURE_CLIENT_ID` (client id),
    /// `MANAGED_IDENTITY_OBJECT_ID` and `MANAGED_IDENTITY_RESOURCE_ID`. At most
    /// one may be set.
    pub fn from_settings(
        client_id: (&'static str, Option<&str>),
        object_id: (&'static str, Option<&str>),
        resource_id: (&'static str, Option<&str>),
    ) -> Result<Option<Self>, SelectorSettingError> {
        let given: Vec<(&'static str, &'static str, &str)> = [
            (client_id, "client_id"),
            (object_id, "object_id"),
            (resource_id, "resource_id"),
        ]
        .into_iter()
        .filter_map(|((name, value), kind)| value.map(|v| (name, kind, v)))
        .collect();
        match given.as_slice() {
            [] => Ok(None),
            [(name, kind, value)] => Self::parse(kind, value)
                .map(Some)
                .map_err(|reason| SelectorSettingError::Invalid { name, reason }),
            many => Err(ConflictingSelectors {
                names: many.iter().map(|(n, _, _)| *n).collect(),
            }
            .into()),
        }
    }
}

impl fmt::Debug for UserAssignedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind(), self.value())
    }
}

impl fmt::Display for UserAssignedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `8-4-4-4-12` hexadecimal digits, the only form Entra ids take.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_user_assigned_resource_id(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("/subscriptions/")
        && lower.contains("/providers/microsoft.managedidentity/userassignedidentities/")
        && !lower.ends_with('/')
        && s.len() <= 1024
        && s.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_selector_setting() {
        const G: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";
        let none = UserAssignedId::from_settings(("A", None), ("B", None), ("C", None));
        assert_eq!(none, Ok(None));
        let one = UserAssignedId::from_settings(("A", Some(G)), ("B", None), ("C", None));
        assert_eq!(one, Ok(Some(UserAssignedId::ClientId(G.into()))));
        let two = UserAssignedId::from_settings(("A", Some(G)), ("B", Some(G)), ("C", None));
        assert!(two.unwrap_err().to_string().contains("A and B"));
        let bad = UserAssignedId::from_settings(("A", Some("x")), ("B", None), ("C", None));
        assert!(matches!(
            bad,
            Err(SelectorSettingError::Invalid { name: "A", .. })
        ));
    }

    const GUID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            UserAssignedId::parse("client_id", GUID).unwrap(),
            UserAssignedId::ClientId(GUID.into())
        );
        assert_eq!(
            UserAssignedId::parse("object_id", GUID).unwrap().kind(),
            SelectorKind::ObjectId
        );
        let rid = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua";
        assert_eq!(
            UserAssignedId::parse("mi_res_id", rid).unwrap(),
            UserAssignedId::ResourceId(rid.into())
        );
    }

    #[test]
    fn rejects_malformed_values() {
        assert!(UserAssignedId::parse("client_id", "not-a-guid").is_err());
        assert!(UserAssignedId::parse("object_id", "").is_err());
        assert!(UserAssignedId::parse("resource_id", "/subscriptions/x/foo").is_err());
        assert!(UserAssignedId::parse("tenant_id", GUID).is_err());
    }

    #[test]
    fn guid_shape() {
        assert!(is_guid(GUID));
        assert!(is_guid(&GUID.to_uppercase()));
        assert!(!is_guid("5e29463d71da4fe08e69999b57db23b0"));
        assert!(!is_guid("5e29463d-71da-4fe0-8e69-999b57db23bz"));
    }
}
