//! The classic failures, each the default world with exactly one thing broken,
//! so users can watch the handler diagnose them without an Azure subscription.

use crate::identity_endpoint::{FaultPlan, FaultStep};
use crate::issuer::v1_issuer;
use crate::world::{APP2_ROLE, GRAPH_APP_ID, GRAPH_READ, World};
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// app1 has no Key Vault role.
    KvNoRole,
    /// app1 is missing from app2's allowedPrincipals.identities.
    App2NotAllowed,
    /// app2's allowedAudiences lacks its api:// Application ID URI.
    App2WrongAudience,
    /// app1 holds no App2.Access app-role assignment.
    App2MissingRole,
    /// app1 selects a user-assigned identity that is not attached.
    UserAssignedMissing,
    /// The identity endpoint answers 500s, then 429s.
    IdentityUnavailable,
    /// app1 holds App2.Access since 10 minutes ago; its cached token is older.
    App2RoleNotYetInToken,
    /// app2's App2.Access is for users only (allowedMemberTypes ["User"]).
    App2RoleNotForApps,
    /// app2 defines no App2.Access role.
    App2RoleMissingOnApi,
    /// app1 holds neither App2.Access nor Graph's Application.Read.All.
    GraphNoPermission,
    /// Graph throttles every request (429 with Retry-After); app1 lacks App2.Access.
    GraphThrottled,
    /// The partner app's FIC trusts another identity's object id.
    FicWrongSubject,
    /// The FIC's subject is the right object id in upper case.
    FicSubjectCase,
    /// The FIC's issuer is the tenant's v1 issuer (sts.windows.net).
    FicWrongIssuer,
    /// The FIC's audience is another cloud's exchange audience.
    FicWrongAudience,
    /// The FIC trusts app1's system-assigned identity, and app1 selects no user-assigned one.
    FicSystemAssigned,
    /// The partner tenant's admin never provisioned the app.
    PartnerNotProvisioned,
    /// The partner tenant never granted the app its API's role.
    PartnerMissingRole,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Self::KvNoRole,
        Self::App2NotAllowed,
        Self::App2WrongAudience,
        Self::App2MissingRole,
        Self::UserAssignedMissing,
        Self::IdentityUnavailable,
        Self::App2RoleNotYetInToken,
        Self::App2RoleNotForApps,
        Self::App2RoleMissingOnApi,
        Self::GraphNoPermission,
        Self::GraphThrottled,
        Self::FicWrongSubject,
        Self::FicSubjectCase,
        Self::FicWrongIssuer,
        Self::FicWrongAudience,
        Self::FicSystemAssigned,
        Self::PartnerNotProvisioned,
        Self::PartnerMissingRole,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KvNoRole => "kv-no-role",
            Self::App2NotAllowed => "app2-not-allowed",
            Self::App2WrongAudience => "app2-wrong-audience",
            Self::App2MissingRole => "app2-missing-role",
            Self::UserAssignedMissing => "user-assigned-missing",
            Self::IdentityUnavailable => "identity-unavailable",
            Self::App2RoleNotYetInToken => "app2-role-not-yet-in-token",
            Self::App2RoleNotForApps => "app2-role-not-for-apps",
            Self::App2RoleMissingOnApi => "app2-role-missing-on-api",
            Self::GraphNoPermission => "graph-no-permission",
            Self::GraphThrottled => "graph-throttled",
            Self::FicWrongSubject => "fic-wrong-subject",
            Self::FicSubjectCase => "fic-subject-case",
            Self::FicWrongIssuer => "fic-wrong-issuer",
            Self::FicWrongAudience => "fic-wrong-audience",
            Self::FicSystemAssigned => "fic-system-assigned",
            Self::PartnerNotProvisioned => "partner-not-provisioned",
            Self::PartnerMissingRole => "partner-missing-role",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::KvNoRole => "app1 has no Key Vault role: Key Vault answers 403 ForbiddenByRbac",
            Self::App2NotAllowed => {
                "app1 is not in app2's allowedPrincipals.identities: EasyAuth answers 403"
            }
            Self::App2WrongAudience => {
                "api://<app2> is not in app2's allowedAudiences: EasyAuth answers 401"
            }
            Self::App2MissingRole => "app1 holds no App2.Access app role: app2 itself answers 403",
            Self::UserAssignedMissing => {
                "app1 selects (AZURE_CLIENT_ID) a user-assigned identity that is not attached: the identity endpoint answers 400"
            }
            Self::IdentityUnavailable => {
                "the identity endpoint answers 500s, then 429s with Retry-After"
            }
            Self::App2RoleNotYetInToken => {
                "app1 was granted App2.Access 10 minutes ago, but the platform's cached token is 30 minutes old: app2 answers 403"
            }
            Self::App2RoleNotForApps => {
                "app2's App2.Access role allows users only (allowedMemberTypes [\"User\"]): no token carries it, app2 answers 403"
            }
            Self::App2RoleMissingOnApi => {
                "app2's registration defines App2.Read, not App2.Access: app2 answers 403"
            }
            Self::GraphNoPermission => {
                "app1 holds neither App2.Access nor Graph's Application.Read.All: app2 answers 403, and the directory cannot be read"
            }
            Self::GraphThrottled => {
                "Graph answers every request 429 TooManyRequests, and app1 lacks App2.Access: app2 answers 403"
            }
            Self::FicWrongSubject => {
                "the partner app's FIC trusts another identity's object id: the partner tenant answers AADSTS700213"
            }
            Self::FicSubjectCase => {
                "the partner app's FIC has the identity's object id in upper case: the partner tenant answers AADSTS7002138"
            }
            Self::FicWrongIssuer => {
                "the partner app's FIC names the v1 issuer https://sts.windows.net/<tenant>/: the partner tenant answers AADSTS700211"
            }
            Self::FicWrongAudience => {
                "the partner app's FIC lists api://AzureADTokenExchangeUSGov: the partner tenant answers AADSTS700212"
            }
            Self::FicSystemAssigned => {
                "the partner app's FIC trusts app1's system-assigned identity, and the partner API selects no user-assigned one: app1 refuses to start"
            }
            Self::PartnerNotProvisioned => {
                "the partner tenant's admin never provisioned the app: the partner tenant answers AADSTS700016"
            }
            Self::PartnerMissingRole => {
                "the partner tenant never granted the app Partner.Access: the partner API answers 403"
            }
        }
    }

    /// Breaks the world.
    pub fn apply(self, world: &mut World) {
        let app1 = world.app1.object_id.clone();
        let app2 = world.app2.client_id.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match self {
            Self::KvNoRole => world.vault_role_assignments.retain(|(oid, _)| *oid != app1),
            Self::App2NotAllowed => {
                world.app2_allowed_identities = vec![uuid::Uuid::new_v4().to_string()]
            }
            Self::App2WrongAudience => world.app2_allowed_audiences.clear(),
            Self::App2MissingRole | Self::GraphThrottled => world.revoke(&app1, &app2, APP2_ROLE),
            Self::App2RoleNotYetInToken => {
                for g in world
                    .grants
                    .iter_mut()
                    .filter(|g| g.resource_app_id == app2)
                {
                    g.created = now - 600;
                }
                world.tokens_minted_at = Some(now - 1800);
            }
            Self::App2RoleNotForApps => {
                // Entra would refuse to assign a user-only role to an app.
                world.revoke(&app1, &app2, APP2_ROLE);
                for role in world.app2.app_roles.iter_mut() {
                    role.allowed_member_types = vec!["User".into()];
                }
            }
            Self::App2RoleMissingOnApi => {
                world.revoke(&app1, &app2, APP2_ROLE);
                for role in world.app2.app_roles.iter_mut() {
                    role.value = "App2.Read".into();
                }
            }
            Self::GraphNoPermission => {
                world.revoke(&app1, &app2, APP2_ROLE);
                world.revoke(&app1, GRAPH_APP_ID, GRAPH_READ);
            }
            Self::FicWrongSubject => {
                world.federated_app.federated_credentials[0].subject =
                    uuid::Uuid::new_v4().to_string()
            }
            Self::FicSubjectCase => {
                let fic = &mut world.federated_app.federated_credentials[0];
                fic.subject = fic.subject.to_uppercase();
            }
            Self::FicWrongIssuer => {
                world.federated_app.federated_credentials[0].issuer = v1_issuer(&world.tenant_id)
            }
            Self::FicWrongAudience => {
                world.federated_app.federated_credentials[0].audiences =
                    vec!["api://AzureADTokenExchangeUSGov".into()]
            }
            Self::FicSystemAssigned => {
                world.federated_app.federated_credentials[0].subject = app1.clone()
            }
            Self::PartnerNotProvisioned => world.federated_app.partner_sp_object_id = None,
            Self::PartnerMissingRole => world.partner.grants.clear(),
            Self::UserAssignedMissing | Self::IdentityUnavailable => {}
        }
    }

    /// Extra settings for the handler.
    pub fn handler_env(self, world: &World) -> Vec<(String, String)> {
        // Short identity retries: a scenario shows a failure, it never waits
        // out the real back-off (tests and `devstack demo` stay quick).
        let mut env: Vec<(String, String)> = [
            ("IDENTITY_MAX_RETRIES", "2"),
            ("IDENTITY_DEADLINE_MS", "5000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        if self == Self::UserAssignedMissing {
            env.push(("AZURE_CLIENT_ID".into(), world.unattached_client_id.clone()));
        }
        env
    }

    /// Settings the env file leaves out: the user-assigned identity a
    /// federated API must select, when the FIC trusts the system-assigned one.
    pub fn removed_env(self) -> &'static [&'static str] {
        match self {
            Self::FicSystemAssigned => &["DOWNSTREAM_APIS__PARTNER__CLIENT_ID"],
            _ => &[],
        }
    }

    /// Faults to script on the identity endpoint.
    pub fn faults(self) -> Option<FaultPlan> {
        match self {
            Self::IdentityUnavailable => Some(FaultPlan {
                resource: None,
                steps: VecDeque::from([
                    FaultStep {
                        status: 500,
                        times: 2,
                        delay_ms: 0,
                        garbage: false,
                        retry_after: None,
                    },
                    FaultStep {
                        status: 429,
                        times: u32::MAX,
                        delay_ms: 0,
                        garbage: false,
                        retry_after: Some(1),
                    },
                ]),
            }),
            _ => None,
        }
    }
}
