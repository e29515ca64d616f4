//! The identity section: which managed-identity source, selector and retries.

use super::{SettingsError, parse};
use crate::identity::{
    IdentityConfig, ManagedIdentitySource, RetryOptions, SourceMode, UserAssignedId,
};
use app_service_identity::SelectorSettingError;
use azure_core::credentials::Secret;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize, Default)]
pub(super) struct RawIdentity {
    managed_identity_source: Option<String>,
    identity_endpoint: Option<String>,
    identity_header: Option<String>,
    msi_endpoint: Option<String>,
    msi_secret: Option<String>,
    azure_pod_identity_authority_host: Option<String>,
    azure_client_id: Option<String>,
    managed_identity_object_id: Option<String>,
    managed_identity_resource_id: Option<String>,
    identity_max_retries: Option<String>,
    identity_attempt_timeout_ms: Option<String>,
    identity_deadline_ms: Option<String>,
}

impl RawIdentity {
    pub(super) fn validate(self) -> Result<IdentityConfig, SettingsError> {
        let selector_settings = (
            ("AZURE_CLIENT_ID", self.azure_client_id.as_deref()),
            (
                "MANAGED_IDENTITY_OBJECT_ID",
                self.managed_identity_object_id.as_deref(),
            ),
            (
                "MANAGED_IDENTITY_RESOURCE_ID",
                self.managed_identity_resource_id.as_deref(),
            ),
        );
        let user_assigned = UserAssignedId::from_settings(
            selector_settings.0,
            selector_settings.1,
            selector_settings.2,
        )
        .map_err(|e| match e {
            SelectorSettingError::Invalid { name, reason } => {
                SettingsError::Invalid { name, reason }
            }
            other => SettingsError::ConflictingIdentitySelectors(other.to_string()),
        })?
        .map(|id| {
            let setting = match id {
                UserAssignedId::ObjectId(_) => "MANAGED_IDENTITY_OBJECT_ID",
                UserAssignedId::ResourceId(_) => "MANAGED_IDENTITY_RESOURCE_ID",
                _ => "AZURE_CLIENT_ID",
            };
            (id, setting)
        });

        let mode = self
            .managed_identity_source
            .as_deref()
            .unwrap_or_default()
            .parse::<SourceMode>()
            .map_err(|reason| SettingsError::Invalid {
                name: "MANAGED_IDENTITY_SOURCE",
                reason,
            })?;

        let retry = if self.identity_max_retries.is_some()
            || self.identity_attempt_timeout_ms.is_some()
            || self.identity_deadline_ms.is_some()
        {
            let base = if mode == SourceMode::Managed(ManagedIdentitySource::Imds) {
                RetryOptions::imds()
            } else {
                RetryOptions::app_service()
            };
            let ms =
                |name, v: &Option<String>, default: Duration| -> Result<Duration, SettingsError> {
                    v.as_deref()
                        .map(|v| parse::<u64>(name, v).map(Duration::from_millis))
                        .unwrap_or(Ok(default))
                };
            Some(RetryOptions {
                max_retries: self
                    .identity_max_retries
                    .as_deref()
                    .map(|v| parse("IDENTITY_MAX_RETRIES", v))
                    .transpose()?
                    .unwrap_or(base.max_retries),
                attempt_timeout: ms(
                    "IDENTITY_ATTEMPT_TIMEOUT_MS",
                    &self.identity_attempt_timeout_ms,
                    base.attempt_timeout,
                )?,
                deadline: ms(
                    "IDENTITY_DEADLINE_MS",
                    &self.identity_deadline_ms,
                    base.deadline,
                )?,
                ..base
            })
        } else {
            None
        };

        Ok(IdentityConfig {
            mode,
            identity_endpoint: self.identity_endpoint,
            identity_header: self.identity_header.map(Secret::from),
            msi_endpoint: self.msi_endpoint,
            msi_secret: self.msi_secret.map(Secret::from),
            imds_authority: self.azure_pod_identity_authority_host,
            user_assigned,
            retry,
        })
    }
}
