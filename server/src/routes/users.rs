//! Admins manage the clinic's users: list, create, change a role, deactivate. Each change
//! is recorded on the clinic's server chain in its transaction; an admin cannot change
//! their own role or deactivate themselves (another admin must).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{NewUser, RoleChange, UserList, UserSummary};
use uuid::Uuid;

use super::{Body, Id};
use crate::app::AppState;
use crate::audit::access::Seen;
use crate::audit::server_chain::{self, security_event};
use crate::auth::Authenticated;
use crate::error::ServerError;
use crate::users::Change;
use crate::{passwords, users};

#[utoipa::path(get, path = "/v1/users",
    responses((status = 200, body = UserList)), security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<UserList>, ServerError> {
    Ok(Json(UserList {
        users: users::list(&state.store, auth.scope()).await?,
    }))
}

#[utoipa::path(post, path = "/v1/users", request_body = NewUser,
    responses((status = 201, body = UserSummary), (status = 400, body = ApiError),
        (status = 409, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<UserSummary>), ServerError> {
    users::validate(&new)?;
    let clinic_name = state
        .store
        .clinic_name(auth.scope().clinic_id())
        .await?
        .unwrap_or_default();
    let context = [
        new.username.as_str(),
        new.display_name.as_str(),
        &clinic_name,
    ];
    if !passwords::acceptable(new.password.expose(), &context) {
        return Err(ServerError::WeakPassword);
    }
    let hash = passwords::hash_in_turn(new.password.expose().to_owned()).await?;
    let admin = &auth.principal.user;
    let mut tx = state.store.pool().begin().await?;
    let expires = state.clock.now_ms() + users::FIRST_PASSWORD_TTL_MS;
    let created = users::insert(&mut tx, auth.scope(), &new, &hash, expires).await?;
    let event = security_event(
        admin,
        AuditAction::UserCreated,
        "User",
        created.user_id.to_string(),
        "create_user",
        seen.for_session(auth.principal.device_id),
    );
    server_chain::record_in(&mut tx, &state, auth.scope(), vec![event]).await?;
    tx.commit().await?;
    tracing::info!(by = %admin.user_id, user_id = %created.user_id, "user created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Applies an admin's change to another user of the clinic and records it, in one
/// transaction. Changing one's own account is refused.
async fn change_user(
    state: &AppState,
    auth: &Authenticated,
    seen: Seen,
    user_id: Uuid,
    change: Change,
) -> Result<StatusCode, ServerError> {
    if auth.principal.user.user_id == user_id {
        return Err(ServerError::Forbidden);
    }
    let (action, route) = match change {
        Change::Role(role) => (AuditAction::RoleChanged, format!("role:{}", role.as_str())),
        Change::Deactivate => (AuditAction::UserDeactivated, "deactivate_user".to_owned()),
    };
    let mut tx = state.store.pool().begin().await?;
    if !users::apply(&mut tx, auth.scope(), user_id, change, state.clock.now_ms()).await? {
        return Err(ServerError::NotFound);
    }
    let event = security_event(
        &auth.principal.user,
        action,
        "User",
        user_id.to_string(),
        &route,
        seen.for_session(auth.principal.device_id),
    );
    server_chain::record_in(&mut tx, state, auth.scope(), vec![event]).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/users/{user_id}/role", request_body = RoleChange,
    params(("user_id" = Uuid, Path, description = "The user whose role changes")),
    responses((status = 204), (status = 404, body = ApiError)), security(("session" = [])))]
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn change_role(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(user_id): Id<Uuid>,
    Body(change): Body<RoleChange>,
) -> Result<StatusCode, ServerError> {
    change_user(&state, &auth, seen, user_id, Change::Role(change.role)).await
}

#[utoipa::path(post, path = "/v1/users/{user_id}/deactivate",
    params(("user_id" = Uuid, Path, description = "The user to deactivate")),
    responses((status = 204), (status = 404, body = ApiError)), security(("session" = [])))]
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn deactivate(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(user_id): Id<Uuid>,
) -> Result<StatusCode, ServerError> {
    change_user(&state, &auth, seen, user_id, Change::Deactivate).await
}
