//! `/v1/users`: the clinic's users as its admins list, create and change them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::policy::Role;
use crate::secret::Secret;
use crate::wire::mfa::MfaMethod;

/// A user of the clinic, as its admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    /// The second factors set up (empty: the next sign-in sets one up).
    pub mfa: Vec<MfaMethod>,
    /// The user still signs in with a first password someone else chose, and replaces it
    /// at that sign-in.
    #[serde(default)]
    pub first_password_pending: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    /// Active users first, then by username.
    pub users: Vec<UserSummary>,
}

/// A user an admin creates. The password is the first one; the user sets up a second
/// factor at their first sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    /// 3 to 40 of `a-z 0-9 . _ -`.
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// At least 12 characters and hard to guess (checked against breach and common-word
    /// lists and the user's own names). A first password: it signs the user in once, to
    /// choose their own, within 72 hours.
    pub password: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleChange {
    pub role: Role,
}
