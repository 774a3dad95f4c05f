//! Admins manage the clinic's users: list, create, change a role, deactivate
//! ([`crate::admin::users`] records each change and refuses one to the admin's own account).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{NewUser, RoleChange, UserList, UserSummary};
use uuid::Uuid;

use crate::admin::users;
use crate::admin::users::Change;
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id};
use crate::state::AppState;

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
    let created = users::create(
        &state,
        auth.scope(),
        &auth.principal.user,
        &new,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Applies an admin's change to another user of the clinic.
async fn change_user(
    state: &AppState,
    auth: &Authenticated,
    seen: Seen,
    user_id: Uuid,
    change: Change,
) -> Result<StatusCode, ServerError> {
    users::change(
        state,
        auth.scope(),
        &auth.principal.user,
        user_id,
        change,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
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
