//! Authorization for every route, from the policy table in `clinicdesk_protocol`.
//!
//! [`authorize`] runs on every matched route: it looks up the route's rule, checks the
//! bearer session for rules that need one, and leaves a [`Principal`] in the request.
//! Handlers take [`Authenticated`], which hands out the [`ClinicScope`] that every
//! store method for clinic data demands; nothing outside this module can make one.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use clinicdesk_protocol::policy::{self, Access, Permission, PhiAccess};

use super::seen::{requested_target, seen_of};
use crate::audit::access::record_refusal;
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::secrets::random::hash_secret;
use crate::session::{OperatorCaller, SessionTouch, operator_principal, session_principal};
use crate::state::AppState;

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

    /// The caller as the writer of a record change: who, from which workstation, seen how.
    /// `change`: the id the workstation gave the change (its `Idempotency-Key`).
    pub fn writer(
        &self,
        seen: crate::audit::access::Seen,
        change: crate::http::extract::ChangeId,
    ) -> crate::clinical::records::Writer<'_> {
        crate::clinical::records::Writer {
            user: &self.principal.user,
            device_id: Some(self.principal.device_id),
            seen: seen.for_session(self.principal.device_id),
            change_id: change.0,
        }
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
        let scope = ClinicScope::of_principal(&principal);
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
                        let seen = seen_of(&request, principal.device_id);
                        let requested = requested_target(request.uri(), false);
                        record_refusal(&state, &principal, kind, &path, requested, seen).await;
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
                    let seen = seen_of(&request, principal.device_id);
                    let requested = requested_target(request.uri(), false);
                    record_refusal(&state, &principal, recorded, &path, requested, seen).await;
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

fn require(principal: &Principal, permission: Permission) -> Result<(), ServerError> {
    if policy::allows(principal.user.role, permission) {
        Ok(())
    } else {
        Err(ServerError::Forbidden)
    }
}

fn bearer_token_hash(request: &Request) -> Result<String, ServerError> {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(hash_secret)
        .ok_or(ServerError::Unauthenticated)
}
