//! Users of a clinic: accounts, roles and login credentials.

use super::*;

/// A user's login record. The password hash never leaves the auth module.
#[derive(Clone)]
pub struct Credentials {
    pub info: UserInfo,
    pub password_hash: String,
    pub active: bool,
    /// The password was chosen by someone else: it works once, to choose one's own.
    pub must_change_password: bool,
    /// When a first password stops working (`None`: never).
    pub password_expires_at_ms: Option<i64>,
}

impl Store {
    pub async fn upsert_user(
        &self,
        clinic_id: Uuid,
        username: &str,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<Uuid, ServerError> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (id, clinic_id, username, display_name, role, password_hash)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (clinic_id, username) DO UPDATE SET
               display_name = excluded.display_name, role = excluded.role,
               password_hash = excluded.password_hash",
        )
        .bind(id.to_string())
        .bind(clinic_id.to_string())
        .bind(username)
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM users WHERE clinic_id = $1 AND username = $2")
            .bind(clinic_id.to_string())
            .bind(username)
            .fetch_one(&self.pool)
            .await?;
        parse_uuid(&row.get::<String, _>(0))
    }

    /// A user's role, for recording what they did.
    pub async fn user_role(&self, user_id: Uuid) -> Result<Option<Role>, ServerError> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        role.as_deref().map(parse_role).transpose()
    }

    pub async fn credentials(
        &self,
        clinic_id: Uuid,
        username: &str,
    ) -> Result<Option<Credentials>, ServerError> {
        let row = sqlx::query(
            "SELECT id, display_name, role, password_hash, active, must_change_password,
                    password_expires_at_ms
             FROM users WHERE clinic_id = $1 AND username = $2",
        )
        .bind(clinic_id.to_string())
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials {
            info: UserInfo {
                user_id: parse_uuid(&row.get::<String, _>(0))?,
                username: username.to_owned(),
                display_name: row.get(1),
                role: parse_role(&row.get::<String, _>(2))?,
                clinic_id,
            },
            password_hash: row.get(3),
            active: flag(&row, 4)?,
            must_change_password: flag(&row, 5)?,
            password_expires_at_ms: row.get(6),
        }))
    }

    pub async fn is_clinic_user(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND clinic_id = $2")
            .bind(user_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
