//! The classic failures, each the default world with exactly one thing broken,
//! so users can watch the handler diagnose them without an Azure subscription.

use crate::identity_endpoint::{FaultPlan, FaultStep};
use crate::world::World;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// app1 has no Key Vault role.
    KvNoRole,
    /// app1 is missing from app2's allowedApplications.
    App2NotAllowed,
    /// app2's allowedAudiences lacks its api:// Application ID URI.
    App2WrongAudience,
    /// app1 holds no App2.Access app-role assignment.
    App2MissingRole,
    /// app1 selects a user-assigned identity that is not attached.
    UserAssignedMissing,
    /// The identity endpoint answers 500s, then 429s.
    IdentityUnavailable,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Self::KvNoRole,
        Self::App2NotAllowed,
        Self::App2WrongAudience,
        Self::App2MissingRole,
        Self::UserAssignedMissing,
        Self::IdentityUnavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KvNoRole => "kv-no-role",
            Self::App2NotAllowed => "app2-not-allowed",
            Self::App2WrongAudience => "app2-wrong-audience",
            Self::App2MissingRole => "app2-missing-role",
            Self::UserAssignedMissing => "user-assigned-missing",
            Self::IdentityUnavailable => "identity-unavailable",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::KvNoRole => "app1 has no Key Vault role: Key Vault answers 403 ForbiddenByRbac",
            Self::App2NotAllowed => {
                "app1 is not in app2's allowedApplications: EasyAuth answers 403"
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
        }
    }

    /// Breaks the world.
    pub fn apply(self, world: &mut World) {
        let app1 = world.app1.object_id.clone();
        match self {
            Self::KvNoRole => world.vault_role_assignments.retain(|(oid, _)| *oid != app1),
            Self::App2NotAllowed => {
                world.app2_allowed_applications = vec![uuid::Uuid::new_v4().to_string()]
            }
            Self::App2WrongAudience => world.app2_allowed_audiences.clear(),
            Self::App2MissingRole => world.app2_role_assignments.retain(|(oid, _)| *oid != app1),
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
