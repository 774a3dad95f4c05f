//! Server-side auditing of every PHI response, by one mechanism: the policy table marks the
//! routes that serve PHI ([`PhiAccess`]), their handlers return [`Served`] (the body and
//! what it disclosed), and [`record_phi_access`] signs and stores one server event per
//! disclosed record before the response leaves. If the event cannot be stored, or a PHI
//! response does not say what it disclosed, the caller gets a plain 500 and no PHI.
//!
//! A PHI route's refusals (403, 404, ...) are recorded too, as `denied` or `failure`,
//! with the requested path as the resource: who tried to reach what is part of the trail.
//! That includes a role the policy table refuses before any handler runs
//! ([`record_refusal`], called by `authorize`).
//!
//! Reads of the audit trail itself (search, proofs, alerts, reports, exports, the
//! break-glass queue) are recorded the same way, one `AuditTrail` event per request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::USER_AGENT;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clinicdesk_protocol::audit::{BreakGlass, Outcome, RequestSeen};
use clinicdesk_protocol::policy::{self, PhiAccess};
use clinicdesk_protocol::wire::{AppointmentList, Patient};
use uuid::Uuid;

use super::server_chain::{self, ServerEvent};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ServerError;

/// Longest `User-Agent` kept in an event; the rest is cut (at a character boundary).
const MAX_USER_AGENT: usize = 256;

/// One record a response disclosed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosed {
    pub resource_id: String,
    pub patient_id: Option<Uuid>,
    /// Names of the fields sent, never their values.
    pub fields: Vec<String>,
}

/// A value that knows which records and fields it carries.
pub trait Discloses {
    fn disclosed(&self) -> Vec<Disclosed>;
}

impl Discloses for Patient {
    fn disclosed(&self) -> Vec<Disclosed> {
        vec![Disclosed {
            resource_id: self.id.to_string(),
            patient_id: Some(self.id),
            fields: self.field_names(),
        }]
    }
}

impl Discloses for AppointmentList {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.appointments
            .iter()
            .map(|a| Disclosed {
                resource_id: a.id.to_string(),
                patient_id: Some(a.patient_id),
                fields: ["starts_at", "patient_name", "reason"]
                    .map(str::to_owned)
                    .to_vec(),
            })
            .collect()
    }
}

/// The response of a PHI handler: a JSON body and what it disclosed, which the middleware
/// takes off the response and records.
pub struct Served<T> {
    body: T,
    break_glass: Option<BreakGlass>,
}

impl<T> Served<T> {
    pub fn new(body: T) -> Self {
        Self {
            body,
            break_glass: None,
        }
    }

    /// Flags every event of this response as read under a break-glass grant.
    pub fn under_break_glass(mut self, flag: Option<BreakGlass>) -> Self {
        self.break_glass = flag;
        self
    }
}

#[derive(Clone)]
struct DisclosedRecords {
    records: Vec<Disclosed>,
    break_glass: Option<BreakGlass>,
}

impl<T: Discloses + serde::Serialize> IntoResponse for Served<T> {
    fn into_response(self) -> Response {
        let disclosed = DisclosedRecords {
            records: self.body.disclosed(),
            break_glass: self.break_glass,
        };
        let mut response = axum::Json(self.body).into_response();
        response.extensions_mut().insert(disclosed);
        response
    }
}

fn user_agent(headers: &axum::http::HeaderMap) -> String {
    let raw = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    raw.chars().take(MAX_USER_AGENT).collect()
}

/// The caller as the server saw it, for handlers that record security events themselves
/// (second factors set up, resets): peer address and `User-Agent`.
#[derive(Debug, Clone)]
pub struct Seen {
    pub client_ip: String,
    pub user_agent: String,
}

impl Seen {
    pub fn for_session(self, device_id: Uuid) -> RequestSeen {
        RequestSeen {
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            session_device_id: Some(device_id),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Seen {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or(ServerError::Internal("request without a peer"))?;
        Ok(Self {
            client_ip: peer.ip().to_string(),
            user_agent: user_agent(&parts.headers),
        })
    }
}

/// Middleware on every route (inside `authorize`): records PHI routes' responses.
pub async fn record_phi_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(path) = request.extensions().get::<MatchedPath>().cloned() else {
        return next.run(request).await;
    };
    let Some(rule) = policy::rule_for(request.method().as_str(), path.as_str()) else {
        return next.run(request).await;
    };
    if let Some(action) = rule.trail {
        return record_trail_read(&state, request, next, &path, action).await;
    }
    let Some(PhiAccess {
        action,
        resource_type,
    }) = rule.phi
    else {
        return next.run(request).await;
    };
    // A PHI route runs only for a session (the policy table makes it `Session`), and
    // every connection has a peer: without either, fail closed.
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ServerError::Internal("PHI route without a principal").into_response();
    };
    let Some(seen) = seen_of(&request, &principal) else {
        return ServerError::Internal("PHI route without a peer").into_response();
    };
    let requested = request.uri().path().to_owned();

    let mut response = next.run(request).await;

    let status = response.status();
    let mut break_glass = None;
    let records = if status.is_success() {
        match response.extensions_mut().remove::<DisclosedRecords>() {
            Some(disclosed) => {
                break_glass = disclosed.break_glass;
                disclosed
                    .records
                    .into_iter()
                    .map(|d| (Outcome::Success, d))
                    .collect()
            }
            None => {
                return ServerError::Internal("PHI response without a disclosure record")
                    .into_response();
            }
        }
    } else {
        let outcome = if matches!(status.as_u16(), 401 | 403 | 404) {
            Outcome::Denied
        } else {
            Outcome::Failure
        };
        vec![(
            outcome,
            Disclosed {
                resource_id: requested,
                patient_id: None,
                fields: Vec::new(),
            },
        )]
    };
    let events = records
        .into_iter()
        .map(|(outcome, d)| ServerEvent {
            actor_user_id: principal.user.user_id,
            actor_role: principal.user.role,
            action,
            resource_type: resource_type.to_owned(),
            resource_id: d.resource_id,
            patient_id: d.patient_id,
            fields: d.fields,
            outcome,
            route: path.as_str().to_owned(),
            break_glass: break_glass.clone(),
            request: seen.clone(),
        })
        .collect();
    let scope = crate::auth::ClinicScope::of_principal(&principal);
    match server_chain::record(&state, &scope, events).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, route = path.as_str(), "audit write failed; PHI withheld");
            ServerError::Internal("audit write failed").into_response()
        }
    }
}

/// Longest request target (path and query) kept as a trail read's resource.
const MAX_TRAIL_TARGET: usize = 512;

/// A read of the audit trail: one `AuditTrail` event per request, whatever its answer,
/// naming the request (its path and query hold only ids, times and codes). As with PHI,
/// no event, no answer.
async fn record_trail_read(
    state: &AppState,
    request: Request,
    next: Next,
    path: &MatchedPath,
    action: clinicdesk_protocol::audit::AuditAction,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ServerError::Internal("trail route without a principal").into_response();
    };
    let Some(seen) = seen_of(&request, &principal) else {
        return ServerError::Internal("trail route without a peer").into_response();
    };
    let uri = request.uri();
    let mut target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    if target.len() > MAX_TRAIL_TARGET {
        let cut = (0..=MAX_TRAIL_TARGET)
            .rev()
            .find(|&i| target.is_char_boundary(i))
            .unwrap_or(0);
        target.truncate(cut);
    }
    let response = next.run(request).await;
    let outcome = match response.status().as_u16() {
        200..=299 => Outcome::Success,
        401 | 403 | 404 => Outcome::Denied,
        _ => Outcome::Failure,
    };
    let event = ServerEvent {
        actor_user_id: principal.user.user_id,
        actor_role: principal.user.role,
        action,
        resource_type: "AuditTrail".to_owned(),
        resource_id: target,
        // Not an access to the patient's record: the target names whom it asked about, and
        // the patient's own access report stays a list of who read their record.
        patient_id: None,
        fields: Vec::new(),
        outcome,
        route: path.as_str().to_owned(),
        break_glass: None,
        request: seen,
    };
    let scope = crate::auth::ClinicScope::of_principal(&principal);
    match server_chain::record(state, &scope, vec![event]).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, route = path.as_str(), "audit write failed; trail withheld");
            ServerError::Internal("audit write failed").into_response()
        }
    }
}

/// What the server saw of a session's request (peer address, `User-Agent`); `None`
/// without a peer, which every real connection has.
pub fn seen_of(request: &Request, principal: &Principal) -> Option<RequestSeen> {
    let ConnectInfo(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()?;
    Some(RequestSeen {
        client_ip: peer.ip().to_string(),
        user_agent: user_agent(request.headers()),
        session_device_id: Some(principal.device_id),
    })
}

/// Records that `principal` was refused a PHI route by the policy table (their role lacks
/// its permission), as a `denied` event with the requested path as the resource. The
/// refusal stands whether or not the event could be stored.
pub async fn record_refusal(
    state: &AppState,
    principal: &Principal,
    phi: PhiAccess,
    route: &str,
    requested: String,
    seen: Option<RequestSeen>,
) {
    let Some(seen) = seen else {
        tracing::error!(route, "refused PHI request without a peer; not recorded");
        return;
    };
    let event = ServerEvent {
        actor_user_id: principal.user.user_id,
        actor_role: principal.user.role,
        action: phi.action,
        resource_type: phi.resource_type.to_owned(),
        resource_id: requested,
        patient_id: None,
        fields: Vec::new(),
        outcome: Outcome::Denied,
        route: route.to_owned(),
        break_glass: None,
        request: seen,
    };
    let scope = crate::auth::ClinicScope::of_principal(principal);
    if let Err(e) = server_chain::record(state, &scope, vec![event]).await {
        tracing::error!(error = %e, route, "a refused PHI request could not be recorded");
    }
}
