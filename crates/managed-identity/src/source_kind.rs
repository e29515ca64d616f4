//! Which protocol produced a token: a module of its own, so that errors and
//! sources both name it without naming each other.

use std::fmt;

/// Which protocol produced a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceKind {
    /// `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, api-version 2019-08-01.
    AppService,
    /// `MSI_ENDPOINT` + `MSI_SECRET`, api-version 2017-09-01.
    AppServiceLegacy,
    /// The instance metadata service, api-version 2018-02-01.
    Imds,
}

impl SourceKind {
    /// A stable snake_case name (`app_service`, `app_service_legacy`, `imds`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppService => "app_service",
            Self::AppServiceLegacy => "app_service_legacy",
            Self::Imds => "imds",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AppService => "App Service (2019-08-01)",
            Self::AppServiceLegacy => "App Service legacy (2017-09-01)",
            Self::Imds => "IMDS",
        })
    }
}
