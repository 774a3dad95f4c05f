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
use crate::error::ServerError;
use crate::scope::Principal;
use crate::session::SessionTouch;
use crate::state::AppState;

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
    /// The route's template (`/v1/auth/mfa/totp`), for events about the request itself.
    pub route: String,
}

impl Seen {
    /// What an event records of it, for a request with no session (an operator's token, a
    /// device's signed upload).
    pub fn without_session(self) -> RequestSeen {
        RequestSeen {
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            session_device_id: None,
        }
    }

    /// What an event records of it, for a request made from `device_id`.
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
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str)
            .to_owned();
        Ok(Self {
            client_ip: peer.ip().to_string(),
            user_agent: user_agent(&parts.headers),
            route,
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
    if let Some(kind) = rule.refusal {
        return record_change_refusal(&state, request, next, &path, kind).await;
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
    let requested = requested_target(request.uri(), false);
    let touch = request.extensions().get::<SessionTouch>().cloned();

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
    let scope = crate::scope::ClinicScope::of_principal(&principal);
    match server_chain::record_with(&state, &scope, events, touch.as_ref()).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, route = path.as_str(), "audit write failed; PHI withheld");
            ServerError::Internal("audit write failed").into_response()
        }
    }
}

/// Query parameters of the trail's routes that name what was asked for (ids, times, codes).
const TRAIL_PARAMS: [&str; 12] = [
    "patient_id",
    "user_id",
    "device_id",
    "action",
    "from_ms",
    "to_ms",
    "limit",
    "format",
    "pending",
    "tree_size",
    "old_size",
    "new_size",
];

/// Whether a path segment or parameter value is an id, number or code (and so kept in an
/// event): short, and ASCII letters, digits, `-`, `_`, `.` or `:` only.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request target as an event records it: each path segment that is an id or a word,
/// anything else (text someone typed into a URL) as `*`; with `query`, the trail's own
/// parameters among [`TRAIL_PARAMS`] whose values are tokens, in the order sent. No value
/// a caller chose freely reaches the trail.
pub(crate) fn requested_target(uri: &axum::http::Uri, query: bool) -> String {
    let mut target = uri
        .path()
        .split('/')
        .map(|segment| {
            if segment.is_empty() || is_token(segment) {
                segment
            } else {
                "*"
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let kept: Vec<&str> = uri
        .query()
        .filter(|_| query)
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| TRAIL_PARAMS.contains(&k) && is_token(v))
        })
        .collect();
    if !kept.is_empty() {
        target.push('?');
        target.push_str(&kept.join("&"));
    }
    target
}

/// A read of the audit trail: one `AuditTrail` event per request, whatever its answer,
/// naming the request ([`requested_target`]). As with PHI, no event, no answer.
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
    let target = requested_target(request.uri(), true);
    let touch = request.extensions().get::<SessionTouch>().cloned();
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
    let scope = crate::scope::ClinicScope::of_principal(&principal);
    match server_chain::record_with(state, &scope, vec![event], touch.as_ref()).await {
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

/// A change of who may see a chart (break-glass, care teams): a success recorded its own
/// event in its transaction; a refusal by the handler (401, 403, 404: not allowed, or no
/// such patient in the caller's clinic) is recorded here as a denied event, before the
/// answer leaves. A bad request (400) is not an attempt at access and is not recorded.
async fn record_change_refusal(
    state: &AppState,
    request: Request,
    next: Next,
    path: &MatchedPath,
    kind: PhiAccess,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ServerError::Internal("change route without a principal").into_response();
    };
    let seen = seen_of(&request, &principal);
    let requested = requested_target(request.uri(), false);
    let response = next.run(request).await;
    if matches!(response.status().as_u16(), 401 | 403 | 404) {
        record_refusal(state, &principal, kind, path.as_str(), requested, seen).await;
    }
    response
}

/// Records that `principal` was refused a PHI route or a change of who may see a chart (by
/// the policy table, or by the handler for a change), as a `denied` event with the
/// requested path as the resource. The refusal stands whether or not the event could be
/// stored.
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
    let scope = crate::scope::ClinicScope::of_principal(principal);
    if let Err(e) = server_chain::record(state, &scope, vec![event]).await {
        tracing::error!(error = %e, route, "a refused PHI request could not be recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::requested_target;

    fn target(uri: &str, query: bool) -> String {
        requested_target(&uri.parse().unwrap(), query)
    }

    #[test]
    fn a_recorded_target_keeps_ids_and_the_trails_parameters_only() {
        let id = "01a20c44-4f75-738c-ae0c-74026003fb4c";
        assert_eq!(
            target(&format!("/v1/audit/events?patient_id={id}&limit=5"), true),
            format!("/v1/audit/events?patient_id={id}&limit=5")
        );
        // Free text in the path or the query, and parameters the route does not take, stay out.
        assert_eq!(
            target("/v1/patients/CANARY%20Jane%20Doe", false),
            "/v1/patients/*"
        );
        assert_eq!(
            target(
                &format!(
                    "/v1/audit/events?name=CANARY-Jane&patient_id={id}&cursor=abc&action=a%20b"
                ),
                true
            ),
            format!("/v1/audit/events?patient_id={id}")
        );
        assert_eq!(
            target(&format!("/v1/patients/{id}?patient_id={id}"), false),
            format!("/v1/patients/{id}")
        );
        assert_eq!(target(&format!("/x/{}", "a".repeat(65)), false), "/x/*");
    }
}
