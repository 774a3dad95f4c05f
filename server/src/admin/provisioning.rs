//! Self-serve onboarding: the operator (through `POST /v1/clinics` with an operator token,
//! or `clinicdesk-server provision-clinic` on the console) creates a clinic with the default
//! policies (15-minute idle lock, 72 hours offline), its first admin and an enrollment code
//! for its first workstation, in one transaction.
//!
//! The admin's first password is a one-time random code: it signs them in once, to choose
//! their own password and then set up a second factor, within 72 hours. The request carries
//! an idempotency key: a retry with the same key and body answers for the same clinic (with
//! fresh codes, the old ones replaced, while the admin has not signed in); the same key with
//! another body, or after the admin has taken over, is a conflict.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{ClinicProvisioned, NewClinic, UserInfo};
use uuid::Uuid;

use crate::admin::users::{FIRST_PASSWORD_TTL_MS, validate_display_name, validate_username};
use crate::audit::server_chain::{self, security_event};
use crate::clinical::days;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::secrets::passwords;
use crate::secrets::random::{hash_secret, human_code, normalize_code};
use crate::state::AppState;
use crate::store::{self, WriteTx};
use crate::time::rfc3339;

/// How long the first workstation's enrollment code works.
const ENROLLMENT_CODE_TTL_MS: i64 = 72 * 60 * 60 * 1000;
/// Default policies of a new clinic.
const IDLE_TIMEOUT_SECS: u64 = 15 * 60;

/// Who asked, for the trail: the operator has no user id, so the event's actor is the nil
/// UUID (as for devices enrolled with an operator's code).
pub const OPERATOR: Uuid = Uuid::nil();

pub fn validate(new: &NewClinic) -> Result<(), ServerError> {
    let key_ok = (8..=64).contains(&new.idempotency_key.len())
        && new
            .idempotency_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !key_ok {
        return Err(ServerError::BadRequest {
            field: "idempotency_key",
        });
    }
    let name = new.clinic_name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err(ServerError::BadRequest {
            field: "clinic_name",
        });
    }
    validate_username(&new.admin_username, "admin_username")?;
    validate_display_name(&new.admin_display_name, "admin_display_name")?;
    if let Some(tz) = &new.time_zone {
        days::zone(tz, "time_zone")?;
    }
    Ok(())
}

/// What makes two requests with one key the same request.
fn request_hash(new: &NewClinic) -> String {
    // A time zone joins the hash only when given, so keys used before it existed still
    // answer for their clinics.
    let canonical = match &new.time_zone {
        None => serde_json::json!([
            new.clinic_name.trim(),
            new.admin_username,
            new.admin_display_name.trim()
        ]),
        Some(tz) => serde_json::json!([
            new.clinic_name.trim(),
            new.admin_username,
            new.admin_display_name.trim(),
            tz
        ]),
    };
    hash_secret(&canonical.to_string())
}

/// Fresh one-time codes: the admin's first password (with its argon2id hash) and an
/// enrollment code (with its hash).
struct Codes {
    first_password: String,
    first_password_hash: String,
    enrollment_code: String,
}

async fn fresh_codes() -> Result<Codes, ServerError> {
    let first_password = human_code()?.to_lowercase();
    let first_password_hash = passwords::hash_in_turn(first_password.clone()).await?;
    Ok(Codes {
        first_password,
        first_password_hash,
        enrollment_code: human_code()?,
    })
}

/// Provisions the clinic `new` asks for; `true` when this call created it.
pub async fn provision(
    state: &AppState,
    new: &NewClinic,
    seen: RequestSeen,
) -> Result<(ClinicProvisioned, bool), ServerError> {
    validate(new)?;
    let codes = fresh_codes().await?;
    match create(state, new, &codes, seen).await? {
        Created::Done(done) => Ok((done, true)),
        // An earlier request with this key, or one that won a race with this one.
        Created::KeyTaken => Ok((replay(state, new, &codes).await?, false)),
    }
}

enum Created {
    Done(ClinicProvisioned),
    KeyTaken,
}

/// Creates the clinic, unless the key is already taken.
async fn create(
    state: &AppState,
    new: &NewClinic,
    codes: &Codes,
    seen: RequestSeen,
) -> Result<Created, ServerError> {
    let now = state.clock.now_ms();
    let clinic_id = Uuid::now_v7();
    let admin_id = Uuid::now_v7();
    let mut tx = state.store.begin_write().await?;
    // A write first, so that SQLite takes its write lock here (waiting its turn) rather
    // than failing to upgrade a read later.
    let clinic = store::clinics::insert_clinic(
        &mut tx,
        clinic_id,
        new.clinic_name.trim(),
        IDLE_TIMEOUT_SECS,
        new.time_zone.as_deref().unwrap_or("UTC"),
        now,
    )
    .await?;
    let scope = ClinicScope::of_new_clinic(&clinic);
    if store::provisionings::key_taken(&mut tx, &new.idempotency_key).await? {
        return Ok(Created::KeyTaken);
    }
    let admin = store::users::FirstPasswordUser {
        id: admin_id,
        username: &new.admin_username,
        display_name: new.admin_display_name.trim(),
        role: Role::Admin,
        password_hash: &codes.first_password_hash,
        expires_at_ms: now + FIRST_PASSWORD_TTL_MS,
    };
    store::users::insert_with_first_password(&mut tx, &scope, &admin).await?;
    let recorded = store::provisionings::insert(
        &mut tx,
        &new.idempotency_key,
        &request_hash(new),
        clinic_id,
        admin_id,
        now,
    )
    .await?;
    if !recorded {
        return Ok(Created::KeyTaken);
    }
    insert_enrollment_code(&mut tx, clinic_id, &codes.enrollment_code, now).await?;
    let operator = UserInfo {
        user_id: OPERATOR,
        username: String::new(),
        display_name: String::new(),
        role: Role::Admin,
        clinic_id,
    };
    let event = security_event(
        &operator,
        AuditAction::UserCreated,
        "User",
        admin_id.to_string(),
        "provision_clinic",
        seen,
    );
    server_chain::record_in(&mut tx, state, &scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(%clinic_id, "clinic provisioned");
    answer(new, clinic_id, admin_id, codes, now).map(Created::Done)
}

/// The answer to a retry: the same clinic, with the codes replaced.
async fn replay(
    state: &AppState,
    new: &NewClinic,
    codes: &Codes,
) -> Result<ClinicProvisioned, ServerError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_write().await?;
    // The key's row first: concurrent retries queue here on PostgreSQL too (see `create`).
    store::provisionings::lock_key(&mut tx, &new.idempotency_key).await?;
    let earlier = store::provisionings::by_key(&mut tx, &new.idempotency_key)
        .await?
        .ok_or(ServerError::Internal("provisioning vanished"))?;
    let conflict = ServerError::Conflict {
        field: "idempotency_key",
    };
    if earlier.request_hash != request_hash(new) || !earlier.admin_first_password_pending {
        return Err(conflict);
    }
    let clinic_id = earlier.clinic_id;
    let admin_id = earlier.admin_user_id;
    store::users::renew_first_password(
        &mut tx,
        admin_id,
        &codes.first_password_hash,
        now + FIRST_PASSWORD_TTL_MS,
    )
    .await?;
    // The earlier answer's enrollment code stops working; the new one replaces it.
    store::enrollment::retire_console_codes(&mut tx, clinic_id, now).await?;
    insert_enrollment_code(&mut tx, clinic_id, &codes.enrollment_code, now).await?;
    tx.commit().await?;
    tracing::info!(%clinic_id, "clinic provisioning retried; codes replaced");
    answer(new, clinic_id, admin_id, codes, now)
}

async fn insert_enrollment_code(
    tx: &mut WriteTx,
    clinic_id: Uuid,
    code: &str,
    now: i64,
) -> Result<(), ServerError> {
    let code_hash = hash_secret(&normalize_code(code));
    store::enrollment::insert_code(
        tx,
        clinic_id,
        &code_hash,
        now + ENROLLMENT_CODE_TTL_MS,
        None,
    )
    .await
}

fn answer(
    new: &NewClinic,
    clinic_id: Uuid,
    admin_user_id: Uuid,
    codes: &Codes,
    now: i64,
) -> Result<ClinicProvisioned, ServerError> {
    Ok(ClinicProvisioned {
        clinic_id,
        clinic_name: new.clinic_name.trim().to_owned(),
        admin_user_id,
        admin_username: new.admin_username.clone(),
        first_password: codes.first_password.clone().into(),
        first_password_expires_at: rfc3339(now + FIRST_PASSWORD_TTL_MS)?,
        enrollment_code: codes.enrollment_code.clone().into(),
        enrollment_code_expires_at: rfc3339(now + ENROLLMENT_CODE_TTL_MS)?,
    })
}
