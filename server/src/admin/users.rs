//! The clinic's users as its admins manage them: list, create, change a role, deactivate.
//! Each change is recorded on the clinic's server chain in its own transaction; an admin
//! cannot change their own role or deactivate themselves (another admin must). A change of
//! role or deactivation ends the user's sessions and second-factor grants at once, so the
//! change takes effect on their next request.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{NewUser, UserInfo, UserSummary};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::audit::server_chain::{self, security_event};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::secrets::passwords;
use crate::state::AppState;
use crate::store::{self, Store};

/// The clinic's users, active first, then by username.
pub async fn list(store: &Store, scope: &ClinicScope) -> Result<Vec<UserSummary>, ServerError> {
    store.clinic_users(scope).await
}

/// A username is 3 to 40 of `a-z 0-9 . _ -`; a display name 1 to 80 printable characters.
pub fn validate(new: &NewUser) -> Result<(), ServerError> {
    validate_username(&new.username, "username")?;
    validate_display_name(&new.display_name, "display_name")
}

/// 3 to 40 lowercase letters, digits, `.`, `_` or `-`.
pub fn validate_username(username: &str, field: &'static str) -> Result<(), ServerError> {
    let ok = (3..=40).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServerError::BadRequest { field })
    }
}

/// Not blank, at most 80 characters, no control characters.
pub fn validate_display_name(name: &str, field: &'static str) -> Result<(), ServerError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(ServerError::BadRequest { field });
    }
    Ok(())
}

/// How long a first password (chosen by an admin or the operator) works: 72 hours.
pub const FIRST_PASSWORD_TTL_MS: i64 = 72 * 60 * 60 * 1000;

/// Adds a user to the clinic with the password `admin` chose for them (it signs them in
/// once, to choose their own, within [`FIRST_PASSWORD_TTL_MS`]) and records
/// `user_created`, in one transaction.
pub async fn create(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    new: &NewUser,
    seen: RequestSeen,
) -> Result<UserSummary, ServerError> {
    validate(new)?;
    let clinic_name = state
        .store
        .clinic_name(scope.clinic_id())
        .await?
        .unwrap_or_default();
    let context = [
        new.username.as_str(),
        new.display_name.as_str(),
        &clinic_name,
    ];
    passwords::check_new(new.password.expose(), &context, "password").await?;
    let hash = passwords::hash_in_turn(new.password.expose().to_owned()).await?;
    let mut tx = state.store.tx().await?;
    let user = store::users::FirstPasswordUser {
        id: Uuid::now_v7(),
        username: &new.username,
        display_name: new.display_name.trim(),
        role: new.role,
        password_hash: &hash,
        expires_at_ms: state.clock.now_ms() + FIRST_PASSWORD_TTL_MS,
    };
    store::users::insert_with_first_password(&mut tx, scope, &user).await?;
    let created = UserSummary {
        user_id: user.id,
        username: new.username.clone(),
        display_name: user.display_name.to_owned(),
        role: new.role,
        active: true,
        mfa: Vec::new(),
        first_password_pending: true,
    };
    let event = security_event(
        admin,
        AuditAction::UserCreated,
        "User",
        created.user_id.to_string(),
        "create_user",
        seen,
    );
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(by = %admin.user_id, user_id = %created.user_id, "user created");
    Ok(created)
}

/// What an admin changes about another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Role(Role),
    Deactivate,
}

/// Applies `admin`'s change to another user of the clinic, ends that user's sessions and
/// grants, and records the change, in one transaction. Changing one's own account is
/// refused; a user the clinic does not have is not found.
pub async fn change(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    user_id: Uuid,
    change: Change,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    if admin.user_id == user_id {
        return Err(ServerError::Forbidden);
    }
    let (action, route) = match change {
        Change::Role(role) => (AuditAction::RoleChanged, format!("role:{}", role.as_str())),
        Change::Deactivate => (AuditAction::UserDeactivated, "deactivate_user".to_owned()),
    };
    let mut tx = state.store.tx().await?;
    // The role history is behind the clinic's wall.
    state.store.enter_clinic(&mut tx, scope).await?;
    let now = state.clock.now_ms();
    let found = match change {
        Change::Role(role) => store::users::set_role(&mut tx, scope, user_id, role).await?,
        Change::Deactivate => store::users::deactivate(&mut tx, scope, user_id).await?,
    };
    if !found {
        return Err(ServerError::NotFound);
    }
    if let Change::Role(role) = change {
        // What ingest judges a workstation's claimed role against (`audit::claims`).
        store::users::record_role_change(&mut tx, scope, user_id, role, now).await?;
    }
    store::sessions::end_user_sessions(&mut tx, user_id, now).await?;
    let event = security_event(admin, action, "User", user_id.to_string(), &route, seen);
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores a new password hash for the user and ends their sessions and grants.
pub async fn set_password(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    password_hash: &str,
    now_ms: i64,
) -> Result<(), ServerError> {
    store::users::set_password(&mut *conn, scope, user_id, password_hash).await?;
    store::sessions::end_user_sessions(conn, user_id, now_ms).await
}
