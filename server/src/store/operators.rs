//! Operator tokens: the table `operator_tokens`, the credentials of `Access::Operator` routes
//! (`POST /v1/clinics`), stored only as hashes of the tokens.

use super::*;

impl Store {
    /// The id of the live (unrevoked) operator token with this hash.
    pub async fn live_operator_token(&self, token_hash: &str) -> Result<Option<Uuid>, ServerError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM operator_tokens WHERE token_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        id.as_deref().map(parse_uuid).transpose()
    }

    pub async fn insert_operator_token(
        &self,
        id: Uuid,
        name: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO operator_tokens (id, name, token_hash, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(token_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes an operator token; false if there is no such live token.
    pub async fn revoke_operator_token(&self, id: Uuid, now_ms: i64) -> Result<bool, ServerError> {
        let done = sqlx::query(
            "UPDATE operator_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
