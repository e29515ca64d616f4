//! A named API's 403 for a missing app role, decided by what the directory
//! says: never assigned, granted after the token was issued, a role that is
//! not for applications (or disabled), or a role the API does not define.

use super::{Directory, Facts};
use crate::azure::graph::{APPLICATION_READ_ALL, AppRole, RoleDirectory};
use crate::problem::ProblemType;
use serde_json::Value;

/// What the rule says: the section, the cause and the fix.
pub type Explained = (ProblemType, String, String);

/// Why a correct fix may not show at once.
const PROPAGATION: &str = "Role assignments can take up to 10 minutes to take effect, and the platform caches managed-identity tokens for up to 24 hours: if the token's roles predate the change, restart the app to get a fresh one.";

fn time_claim(f: &Facts, name: &str) -> Option<i64> {
    f.upstream
        .claims
        .as_ref()?
        .get(name)
        .and_then(Value::as_i64)
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The 403's explanation. `placeholder_fix` is what is said without the
/// directory (the app's client id may be unknown then).
pub fn missing_role(
    f: &Facts,
    api: &str,
    role: &str,
    oid: &str,
    roles_now: &str,
    placeholder_fix: String,
) -> Explained {
    let refused = format!(
        "EasyAuth let the caller in, but {api} requires the app role {role} and the token's roles claim is {roles_now}. EasyAuth never checks roles; {api} does."
    );
    match &f.directory {
        Some(Directory::Read(directory)) => verified(f, api, role, oid, directory),
        Some(Directory::Unreadable(u)) => (
            ProblemType::App2MissingAppRole,
            refused,
            format!(
                "{placeholder_fix} Microsoft Graph could not be read to check which case this is ({} {}): granting {APPLICATION_READ_ALL} to principal {oid} would let this diagnosis tell a role never assigned from a token that predates the grant, with the exact ids.",
                u.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unreachable".into()),
                u.code.as_deref().unwrap_or_default()
            ),
        ),
        None => (ProblemType::App2MissingAppRole, refused, placeholder_fix),
    }
}

fn verified(f: &Facts, api: &str, role: &str, oid: &str, d: &RoleDirectory) -> Explained {
    let sp = &d.api;
    let app_id = sp.app_id.as_deref().unwrap_or_default();
    let named = format!(
        "{api}'s service principal {} ({})",
        sp.id,
        sp.display_name.as_deref().unwrap_or(app_id)
    );
    let Some(defined) = sp
        .app_roles
        .iter()
        .find(|r| r.value.as_deref() == Some(role))
    else {
        let values: Vec<&str> = sp
            .app_roles
            .iter()
            .filter_map(|r| r.value.as_deref())
            .collect();
        return (
            ProblemType::RoleMissingOnApi,
            format!(
                "{api} requires the app role {role}, but {named} defines no such role: it defines {}. No assignment can put {role} in a token.",
                if values.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{values:?}")
                }
            ),
            format!(
                "Add an app role with value {role} and allowedMemberTypes [\"Application\"] to {api}'s app registration (appId {app_id}; infra/main.bicep declares it), then assign it to principal {oid}; or make {api} require one of the roles it defines."
            ),
        );
    };
    if !defined.is_enabled || !defined.for_applications() {
        return not_for_applications(api, role, &named, app_id, defined);
    }
    let assignment = d.assignments.iter().find(|a| a.app_role_id == defined.id);
    match assignment {
        None => (
            ProblemType::RoleNeverAssigned,
            format!(
                "The directory shows no assignment of {api}'s app role {role} (id {}) to principal {oid}: it was never granted (the token's roles agree).",
                defined.id
            ),
            format!(
                "Assign it: az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/{oid}/appRoleAssignments --body \"{{\\\"principalId\\\":\\\"{oid}\\\",\\\"resourceId\\\":\\\"{}\\\",\\\"appRoleId\\\":\\\"{}\\\"}}\" (PowerShell: New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {oid} -PrincipalId {oid} -ResourceId {} -AppRoleId {}). {PROPAGATION}",
                sp.id, defined.id, sp.id, defined.id
            ),
        ),
        Some(a) => {
            let created = a.created_unix();
            let iat = time_claim(f, "iat");
            let when = a.created_date_time.as_deref().unwrap_or("an unknown time");
            let issued = iat.map(rfc3339).unwrap_or_else(|| "an unknown time".into());
            let cause = match (created, iat) {
                (Some(c), Some(i)) if i < c => format!(
                    "Principal {oid} was granted {api}'s app role {role} at {when} (assignment {}), but the token was issued at {issued}, {} s before the grant: the platform caches managed-identity tokens for up to 24 hours, so this token predates the assignment.",
                    a.id,
                    c - i
                ),
                _ => format!(
                    "Principal {oid} holds {api}'s app role {role} since {when} (assignment {}), and the token (issued at {issued}) still lacks it: Entra had not yet replicated the grant when the token was issued.",
                    a.id
                ),
            };
            let until = time_claim(f, "exp")
                .map(|e| format!(" It expires at {}.", rfc3339(e)))
                .unwrap_or_default();
            (
                ProblemType::RoleNotYetInToken,
                cause,
                format!(
                    "Nothing needs to be granted. Restart the app (az functionapp restart -g <rg> -n <app>) so its identity gets a fresh token, or wait for the cached one to expire.{until}"
                ),
            )
        }
    }
}

fn not_for_applications(
    api: &str,
    role: &str,
    named: &str,
    app_id: &str,
    defined: &AppRole,
) -> Explained {
    let mut problems = vec![];
    if !defined.for_applications() {
        problems.push(format!(
            "its allowedMemberTypes are {:?}, without \"Application\", so it can be assigned to users and groups only",
            defined.allowed_member_types
        ));
    }
    if !defined.is_enabled {
        problems.push("it is disabled (isEnabled false)".to_owned());
    }
    (
        ProblemType::RoleNotForApplications,
        format!(
            "{named} defines the app role {role} (id {}), but {}: Entra never puts it in a managed identity's token.",
            defined.id,
            problems.join(", and ")
        ),
        format!(
            "In {api}'s app registration (appId {app_id}), set the role {role}'s allowedMemberTypes to include \"Application\" and isEnabled to true (az ad app show --id {app_id} --query appRoles > roles.json; edit; az ad app update --id {app_id} --app-roles @roles.json; infra/main.bicep declares it so), then assign it to the identity."
        ),
    )
}
