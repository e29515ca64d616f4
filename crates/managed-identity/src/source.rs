//! The identity sources and the exact request each protocol expects.

use crate::error::IdentityError;
pub use crate::source_kind::SourceKind;
use crate::transport::EndpointRequest;
use crate::user_assigned::UserAssignedId;
use azure_core::credentials::Secret;
use std::fmt;
use url::Url;

/// The default IMDS token endpoint on VMs and AKS nodes.
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Where tokens come from: a protocol and its endpoint, chosen once.
#[derive(Clone)]
pub(crate) enum IdentitySource {
    AppService { endpoint: Url, header: Secret },
    AppServiceLegacy { endpoint: Url, secret: Secret },
    Imds { endpoint: Url },
}

impl fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AppService { endpoint, .. }
            | Self::AppServiceLegacy { endpoint, .. }
            | Self::Imds { endpoint } => f
                .debug_struct(self.kind().as_str())
                .field("endpoint", &endpoint.as_str())
                .finish_non_exhaustive(),
        }
    }
}

impl IdentitySource {
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::AppService { .. } => SourceKind::AppService,
            Self::AppServiceLegacy { .. } => SourceKind::AppServiceLegacy,
            Self::Imds { .. } => SourceKind::Imds,
        }
    }

    /// The endpoint URL, for logs (never a secret).
    pub fn endpoint(&self) -> &Url {
        match self {
            Self::AppService { endpoint, .. }
            | Self::AppServiceLegacy { endpoint, .. }
            | Self::Imds { endpoint } => endpoint,
        }
    }

    /// Whether this protocol can select `identity` (the legacy one takes only a client id).
    pub fn check_selector(&self, identity: Option<&UserAssignedId>) -> Result<(), IdentityError> {
        match (self, identity) {
            (Self::AppServiceLegacy { .. }, Some(id))
                if !matches!(id, UserAssignedId::ClientId(_)) =>
            {
                Err(IdentityError::UnsupportedSelector {
                    via: SourceKind::AppServiceLegacy,
                    selector: id.kind(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Builds the token request for `resource` and an optional user-assigned id.
    pub fn request(
        &self,
        resource: &str,
        identity: Option<&UserAssignedId>,
    ) -> Result<EndpointRequest, IdentityError> {
        self.check_selector(identity)?;
        let (endpoint, api_version, headers, selector) = match self {
            Self::AppService { endpoint, header } => (
                endpoint,
                "2019-08-01",
                vec![
                    ("X-IDENTITY-HEADER", header.clone()),
                    // Harmless for App Service, needed by Azure Automation (as MSAL sends it).
                    ("Metadata", Secret::from("true")),
                ],
                identity.map(|id| match id {
                    UserAssignedId::ClientId(_) => "client_id",
                    UserAssignedId::ObjectId(_) => "object_id",
                    // Not `msi_res_id` (the Rust SDK's spelling, azure-sdk-for-rust#2407).
                    UserAssignedId::ResourceId(_) => "mi_res_id",
                }),
            ),
            Self::AppServiceLegacy { endpoint, secret } => (
                endpoint,
                "2017-09-01",
                vec![("secret", secret.clone())],
                identity.map(|_| "clientid"),
            ),
            Self::Imds { endpoint } => (
                endpoint,
                "2018-02-01",
                vec![("Metadata", Secret::from("true"))],
                identity.map(|id| match id {
                    UserAssignedId::ClientId(_) => "client_id",
                    UserAssignedId::ObjectId(_) => "object_id",
                    // IMDS's own REST spec spells it msi_res_id.
                    UserAssignedId::ResourceId(_) => "msi_res_id",
                }),
            ),
        };

        let mut url = endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("api-version", api_version);
            query.append_pair("resource", resource);
            if let (Some(param), Some(id)) = (selector, identity) {
                query.append_pair(param, id.value());
            }
        }
        Ok(EndpointRequest { url, headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_service() -> IdentitySource {
        IdentitySource::AppService {
            endpoint: Url::parse("http://127.0.0.1:41564/msi/token").unwrap(),
            header: Secret::from("hdr"),
        }
    }

    fn query(req: &EndpointRequest) -> Vec<(String, String)> {
        req.url.query_pairs().into_owned().collect()
    }

    #[test]
    fn app_service_2019_request_shape() {
        let req = app_service()
            .request("https://vault.azure.net", None)
            .unwrap();
        assert_eq!(
            query(&req),
            vec![
                ("api-version".into(), "2019-08-01".into()),
                ("resource".into(), "https://vault.azure.net".into())
            ]
        );
        assert_eq!(req.headers[0].0, "X-IDENTITY-HEADER");
        assert_eq!(req.headers[0].1.secret(), "hdr");
    }

    #[test]
    fn selector_parameter_names_per_protocol() {
        let rid = UserAssignedId::ResourceId("/subscriptions/s/resourcegroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u".into());
        let cid = UserAssignedId::ClientId("c".into());
        let oid = UserAssignedId::ObjectId("o".into());
        let name = |src: &IdentitySource, id: &UserAssignedId| {
            query(&src.request("r", Some(id)).unwrap())[2].0.clone()
        };
        let legacy = IdentitySource::AppServiceLegacy {
            endpoint: Url::parse("http://127.0.0.1:1/msi").unwrap(),
            secret: Secret::from("s"),
        };
        let imds = IdentitySource::Imds {
            endpoint: Url::parse(IMDS_TOKEN_URL).unwrap(),
        };
        assert_eq!(name(&app_service(), &cid), "client_id");
        assert_eq!(name(&app_service(), &oid), "object_id");
        assert_eq!(name(&app_service(), &rid), "mi_res_id");
        assert_eq!(name(&legacy, &cid), "clientid");
        assert_eq!(name(&imds, &rid), "msi_res_id");
        assert!(matches!(
            legacy.request("r", Some(&oid)),
            Err(IdentityError::UnsupportedSelector { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_header() {
        let text = format!("{:?}", app_service());
        assert!(!text.contains("hdr"), "{text}");
        assert!(text.contains("127.0.0.1:41564"));
    }
}
