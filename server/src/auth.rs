//! Authorization for every route, from the policy table in `clinicdesk_protocol`.
//!
//! [`authorize`] runs on every matched route: it looks up the route's rule, checks the
//! bearer session for rules that need one, and leaves a [`Principal`] in the request.
//! Handlers take [`Authenticated`], which hands out the [`ClinicScope`] that every
//! store method for clinic data demands; nothing outside this module can make one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use clinicdesk_protocol::audit::{Hash32, Recorder, SignedAuditEvent, from_hex};
use clinicdesk_protocol::policy::{self, Access, Permission, PhiAccess};
use clinicdesk_protocol::signature::{self, PublicKey};
use clinicdesk_protocol::wire::UserInfo;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ServerError;
use crate::random::hash_secret;
use crate::store::DeviceRecord;

/// Proof that a request acts within one clinic. Private field: only this module builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicScope {
    clinic_id: Uuid,
}

impl ClinicScope {
    pub fn clinic_id(&self) -> Uuid {
        self.clinic_id
    }

    /// For the operator's own CLI (seeding, provisioning), which acts on a clinic it names
    /// on the server's console rather than through a session.
    pub(crate) fn provisioning(clinic_id: Uuid) -> Self {
        Self { clinic_id }
    }

    /// The clinic of a one-time enrollment code, which the new workstation just redeemed.
    pub(crate) fn of_enrollment(clinic_id: Uuid) -> Self {
        Self { clinic_id }
    }

    /// The clinic of a login ticket: its user proved the password on a device of the clinic.
    pub(crate) fn of_mfa_ticket(ticket: &crate::mfa::store::Ticket) -> Self {
        Self {
            clinic_id: ticket.user.clinic_id,
        }
    }

    /// The clinic of an account a failed sign-in named on one of the clinic's devices (or
    /// in a ticket or session of it), for recording the attempt on that account alone.
    pub(crate) fn of_attempted_account(user: &UserInfo) -> Self {
        Self {
            clinic_id: user.clinic_id,
        }
    }

    /// The clinic of a principal that [`authorize`] put in the request.
    pub(crate) fn of_principal(principal: &Principal) -> Self {
        Self {
            clinic_id: principal.user.clinic_id,
        }
    }
}

/// Who is calling: the session's user, device and the token's hash.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserInfo,
    pub device_id: Uuid,
    pub token_hash: String,
}

/// Extractor for handlers of session routes.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    scope: ClinicScope,
}

impl Authenticated {
    pub fn scope(&self) -> &ClinicScope {
        &self.scope
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ServerError::Unauthenticated)?;
        let scope = ClinicScope {
            clinic_id: principal.user.clinic_id,
        };
        Ok(Self { principal, scope })
    }
}

/// Middleware applying the route's rule. A matched route without a rule is refused.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ServerError> {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .ok_or(ServerError::NotFound)?;
    // The router is built from the table, so a matched path without a rule for this method
    // is a method the path does not offer (TRACE, PUT, ...); no handler runs for it.
    let rule = policy::rule_for(request.method().as_str(), &path).ok_or(
        if policy::ROUTES.iter().any(|r| r.path == path) {
            ServerError::MethodNotAllowed
        } else {
            ServerError::Internal("route without a policy rule")
        },
    )?;
    match rule.access {
        // The handler proves these from the body (code, device signatures).
        Access::Public
        | Access::EnrollmentCode
        | Access::DeviceAndPassword
        | Access::MfaTicket
        | Access::DeviceSigned => {}
        Access::Operator => {
            let operator = operator_principal(&state, &bearer_token_hash(&request)?).await?;
            request.extensions_mut().insert(operator);
        }
        Access::AnySession => {
            let principal = session_principal(&state, bearer_token_hash(&request)?).await?;
            SessionTouch::new(&principal, &state)
                .write_unless_written(&state)
                .await?;
            request.extensions_mut().insert(principal);
        }
        Access::Session(permission) => {
            let principal = session_principal(&state, bearer_token_hash(&request)?).await?;
            let touch = SessionTouch::new(&principal, &state);
            // Who tried to read PHI or the audit trail, with or without the role for it, is
            // part of the trail.
            let Some(recorded) = rule.phi.or(rule.trail.map(|action| PhiAccess {
                action,
                resource_type: "AuditTrail",
            })) else {
                touch.write_unless_written(&state).await?;
                if let Err(refused) = require(&principal, permission) {
                    // A refused change of who may see a chart is part of the trail too.
                    if let Some(kind) = rule.refusal {
                        let seen = crate::audit::access::seen_of(&request, &principal);
                        let requested =
                            crate::audit::access::requested_target(request.uri(), false);
                        crate::audit::access::record_refusal(
                            &state, &principal, kind, &path, requested, seen,
                        )
                        .await;
                    }
                    return Err(refused);
                }
                request.extensions_mut().insert(principal);
                return Ok(next.run(request).await);
            };
            // A recorded route is a read (the policy table's tests hold it to that), so its
            // session's last-seen time can be written after the handler: by the recorder,
            // with the request's event, or else (a refusal, a failed audit write, no
            // recorder) here.
            let response = match require(&principal, permission) {
                Err(refused) => {
                    let seen = crate::audit::access::seen_of(&request, &principal);
                    let requested = crate::audit::access::requested_target(request.uri(), false);
                    crate::audit::access::record_refusal(
                        &state, &principal, recorded, &path, requested, seen,
                    )
                    .await;
                    Err(refused)
                }
                Ok(()) => {
                    request.extensions_mut().insert(principal);
                    request.extensions_mut().insert(touch.clone());
                    Ok(next.run(request).await)
                }
            };
            touch.write_unless_written(&state).await?;
            return response;
        }
    }
    Ok(next.run(request).await)
}

/// A session's last-seen time, for a request whose audit event is recorded: written in the
/// same transaction as that event ([`crate::audit::server_chain::record_with`]), so an
/// audited read commits once, not twice; or by [`authorize`] once the handler is done, if
/// nothing wrote it.
#[derive(Debug, Clone)]
pub struct SessionTouch {
    token_hash: String,
    at_ms: i64,
    written: Arc<AtomicBool>,
}

impl SessionTouch {
    fn new(principal: &Principal, state: &AppState) -> Self {
        Self {
            token_hash: principal.token_hash.clone(),
            at_ms: state.clock.now_ms(),
            written: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The write, for a transaction to carry.
    pub(crate) fn statement(&self) -> crate::sql::Statement {
        // Never backwards: a slow request that began earlier may finish after a later one.
        let mut st = crate::sql::Statement::new(
            "UPDATE sessions SET last_seen_at_ms = CASE WHEN last_seen_at_ms > ",
        );
        st.bind(self.at_ms)
            .push(" THEN last_seen_at_ms ELSE ")
            .bind(self.at_ms)
            .push(" END WHERE token_hash = ")
            .bind(self.token_hash.as_str());
        st
    }

    /// Says that a committed transaction carried the write.
    pub(crate) fn mark_written(&self) {
        self.written.store(true, Ordering::Release);
    }

    async fn write_unless_written(&self, state: &AppState) -> Result<(), ServerError> {
        if !self.written.load(Ordering::Acquire) {
            self.statement().query().execute(state.store.pool()).await?;
        }
        Ok(())
    }
}

/// A request made with a live operator token (`Access::Operator`).
#[derive(Debug, Clone, Copy)]
pub struct OperatorCaller {
    pub token_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for OperatorCaller {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<OperatorCaller>()
            .copied()
            .ok_or(ServerError::Unauthenticated)
    }
}

async fn operator_principal(
    state: &AppState,
    token_hash: &str,
) -> Result<OperatorCaller, ServerError> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM operator_tokens WHERE token_hash = $1 AND revoked_at_ms IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(state.store.pool())
    .await?;
    let id = id.ok_or(ServerError::Unauthenticated)?;
    Ok(OperatorCaller {
        token_id: crate::store::parse_uuid(&id)?,
    })
}

fn require(principal: &Principal, permission: Permission) -> Result<(), ServerError> {
    if policy::allows(principal.user.role, permission) {
        Ok(())
    } else {
        Err(ServerError::Forbidden)
    }
}

/// Absolute session lifetime: 12 hours.
pub const SESSION_MAX_AGE_MS: i64 = 12 * 60 * 60 * 1000;

fn bearer_token_hash(request: &Request) -> Result<String, ServerError> {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(hash_secret)
        .ok_or(ServerError::Unauthenticated)
}

async fn session_principal(state: &AppState, token_hash: String) -> Result<Principal, ServerError> {
    let session = state
        .store
        .session(&token_hash)
        .await?
        .ok_or(ServerError::Unauthenticated)?;
    if session.device_revoked {
        return Err(ServerError::DeviceRevoked);
    }
    if session.revoked {
        return Err(ServerError::SessionExpired);
    }
    let now = state.clock.now_ms();
    let idle_ms = i64::try_from(session.idle_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now - session.last_seen_at_ms > idle_ms || now - session.created_at_ms > SESSION_MAX_AGE_MS {
        state.store.revoke_session(&token_hash, now).await?;
        return Err(ServerError::SessionExpired);
    }
    Ok(Principal {
        user: session.user,
        device_id: session.device_id,
        token_hash,
    })
}

/// A registered device that is not revoked (`device_unknown`, `device_revoked` otherwise).
pub async fn live_device(state: &AppState, device_id: Uuid) -> Result<DeviceRecord, ServerError> {
    let device = state
        .store
        .device(device_id)
        .await?
        .ok_or(ServerError::DeviceUnknown)?;
    if device.revoked {
        return Err(ServerError::DeviceRevoked);
    }
    Ok(device)
}

/// Authenticates a batch of device-signed events (`Access::DeviceSigned`): the device is
/// registered and not revoked, and every event names that device and its clinic and
/// carries a valid signature of its key. Only then is the device's clinic a scope.
/// A batch must hold at least one event: an empty one would prove nothing.
pub async fn verify_device_batch(
    state: &AppState,
    device_id: Uuid,
    events: &[SignedAuditEvent],
) -> Result<VerifiedBatch, ServerError> {
    if events.is_empty() {
        return Err(ServerError::BadRequest { field: "events" });
    }
    let device = live_device(state, device_id).await?;
    let key = PublicKey::from_bytes(&device.public_key)
        .ok_or(ServerError::Internal("stored device key invalid"))?;
    for signed in events {
        let e = &signed.event;
        if e.device_id != device.id || e.clinic_id != device.clinic_id {
            return Err(ServerError::Forbidden);
        }
        // Only the server records as the server, and only it says what it saw of a request.
        if e.recorded_by != Recorder::Device {
            return Err(ServerError::BadRequest {
                field: "recorded_by",
            });
        }
        if e.request.is_some() {
            return Err(ServerError::BadRequest { field: "request" });
        }
    }
    let signed = events
        .iter()
        .map(|e| {
            from_hex(&e.signature)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .map(|signature| (e.event.canonical_bytes(), signature))
                .ok_or(ServerError::InvalidSignature { field: "signature" })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = verify_signatures(key, signed).await?;
    let scope = ClinicScope {
        clinic_id: device.clinic_id,
    };
    Ok(VerifiedBatch {
        device,
        scope,
        hashes,
    })
}

/// A batch whose every signature checked out.
pub struct VerifiedBatch {
    pub device: DeviceRecord,
    pub scope: ClinicScope,
    /// Each event's hash, in the batch's order: computed with its signature check, from
    /// the same canonical bytes.
    pub hashes: Vec<Hash32>,
}

/// Below this many events one thread checks them all; above, the work is spread.
const EVENTS_PER_THREAD: usize = 64;

/// Checks every event's signature (canonical encoding, signature) off the async workers, a
/// share per core, each share as one batch ([`signature::verify_batch`], about four times
/// faster than one by one), and hashes each encoding on the way. One bad signature fails
/// the whole upload; otherwise the answer is the events' hashes, in order.
async fn verify_signatures(
    key: PublicKey,
    signed: Vec<(Vec<u8>, [u8; 64])>,
) -> Result<Vec<Hash32>, ServerError> {
    let failed = || ServerError::Internal("signature check");
    let threads = cores().min(signed.len().div_ceil(EVENTS_PER_THREAD)).max(1);
    // In turn: see [`check_cores`].
    let _cores = check_cores()
        .acquire_many(u32::try_from(threads).unwrap_or(1))
        .await
        .map_err(|_| failed())?;
    let valid = tokio::task::spawn_blocking(move || {
        let share = signed.len().div_ceil(threads).max(1);
        let key = &key;
        std::thread::scope(|s| {
            let workers: Vec<_> = signed
                .chunks(share)
                .map(|chunk| s.spawn(move || verify_share(key, chunk)))
                .collect();
            let mut hashes = Vec::with_capacity(signed.len());
            for worker in workers {
                hashes.push(worker.join().map_err(|_| failed())??);
            }
            Ok::<_, ServerError>(hashes.into_iter().collect::<Option<Vec<_>>>())
        })
    })
    .await
    .map_err(|_| failed())??;
    let hashes: Vec<Vec<Hash32>> =
        valid.ok_or(ServerError::InvalidSignature { field: "signature" })?;
    Ok(hashes.into_iter().flatten().collect())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One thread of signature checks per core at once, first come first served. Uploads that
/// arrive together (a clinic's workstations after an outage) would otherwise be checked
/// all at once, each slowed by the others, and reach the write turn together and late,
/// leaving it idle meanwhile; in turn, one is written while the next is checked.
fn check_cores() -> &'static tokio::sync::Semaphore {
    static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CORES.get_or_init(|| tokio::sync::Semaphore::new(cores()))
}

/// One share's check: its events' hashes if every signature in it is valid.
fn verify_share(
    key: &PublicKey,
    share: &[(Vec<u8>, [u8; 64])],
) -> Result<Option<Vec<Hash32>>, ServerError> {
    // Each signature's coefficient is fresh OS randomness: a device cannot aim a forged
    // signature at coefficients it does not know.
    let mut coefficients = vec![0u8; share.len() * 16];
    getrandom::fill(&mut coefficients)
        .map_err(|_| ServerError::Internal("os random source failed"))?;
    if !signature::verify_batch(key, share, &coefficients) {
        return Ok(None);
    }
    Ok(Some(
        share
            .iter()
            .map(|(bytes, _)| Hash32::of_canonical(bytes))
            .collect(),
    ))
}
