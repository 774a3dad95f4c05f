//! The recorder's HTTP side (`crate::audit::access` builds and stores the events):
//! [`record_phi_access`], the middleware that has every PHI route's answer, every read of
//! the audit trail and every refused change of who may see a chart recorded before the
//! answer leaves; [`Served`]'s response, which carries its disclosure to the middleware;
//! and the [`Seen`] extractor.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clinicdesk_protocol::audit::{AuditAction, Outcome};
use clinicdesk_protocol::policy::{self, PhiAccess};

use super::seen::{requested_target, seen_of, user_agent};
use crate::audit::access::{self, Answer, Discloses, Disclosure, Seen, Served};
use crate::error::ServerError;
use crate::scope::Principal;
use crate::session::SessionTouch;
use crate::state::AppState;

impl<T: Discloses + serde::Serialize> IntoResponse for Served<T> {
    fn into_response(self) -> Response {
        let (body, disclosure) = self.into_disclosure();
        let mut response = axum::Json(body).into_response();
        response.extensions_mut().insert(disclosure);
        response
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

/// An answer's outcome as an event records it: a refusal (401, 403, 404) is `denied`.
fn outcome(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Success,
        401 | 403 | 404 => Outcome::Denied,
        _ => Outcome::Failure,
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
        return record_read(&state, request, next, &path, Read::Trail(action)).await;
    }
    if let Some(kind) = rule.refusal {
        return record_change_refusal(&state, request, next, &path, kind).await;
    }
    let Some(phi) = rule.phi else {
        return next.run(request).await;
    };
    record_read(&state, request, next, &path, Read::Phi(phi)).await
}

/// A route whose every answer is recorded before it leaves.
#[derive(Clone, Copy)]
enum Read {
    /// A PHI route: a success is recorded as the records its body disclosed.
    Phi(PhiAccess),
    /// A read of the audit trail: one `AuditTrail` event per request, whatever its answer.
    Trail(AuditAction),
}

/// A read's answer goes out only once its events are stored: one per record a PHI
/// response disclosed, else one naming the request ([`requested_target`], the trail's own
/// parameters included for a read of the trail). No event, no answer.
async fn record_read(
    state: &AppState,
    request: Request,
    next: Next,
    path: &MatchedPath,
    read: Read,
) -> Response {
    let (no_principal, no_peer, what) = match read {
        Read::Phi(_) => (
            "PHI route without a principal",
            "PHI route without a peer",
            "PHI",
        ),
        Read::Trail(_) => (
            "trail route without a principal",
            "trail route without a peer",
            "trail",
        ),
    };
    // A recorded route runs only for a session (the policy table makes it `Session`), and
    // every connection has a peer: without either, fail closed.
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ServerError::Internal(no_principal).into_response();
    };
    let Some(seen) = seen_of(&request, principal.device_id) else {
        return ServerError::Internal(no_peer).into_response();
    };
    let target = requested_target(request.uri(), matches!(read, Read::Trail(_)));
    let touch = request.extensions().get::<SessionTouch>().cloned();

    let mut response = next.run(request).await;

    let outcome = outcome(response.status());
    let (recorded, answer) = match read {
        Read::Phi(phi) if outcome == Outcome::Success => {
            match response.extensions_mut().remove::<Disclosure>() {
                Some(disclosure) => (phi, Answer::Disclosed(disclosure)),
                None => {
                    return ServerError::Internal("PHI response without a disclosure record")
                        .into_response();
                }
            }
        }
        Read::Phi(phi) => (phi, Answer::Target { outcome, target }),
        Read::Trail(action) => (
            PhiAccess {
                action,
                resource_type: "AuditTrail",
            },
            Answer::Target { outcome, target },
        ),
    };
    let stored = access::record_read(
        state,
        &principal,
        recorded,
        path.as_str(),
        seen,
        answer,
        touch.as_ref(),
    );
    match stored.await {
        Ok(()) => response,
        // Out of space says so (503, the server up); any other failure is internal.
        Err(ServerError::StorageFull) => ServerError::StorageFull.into_response(),
        Err(e) => {
            tracing::error!(error = %e, route = path.as_str(), "audit write failed; {what} withheld");
            ServerError::Internal("audit write failed").into_response()
        }
    }
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
    let seen = seen_of(&request, principal.device_id);
    let requested = requested_target(request.uri(), false);
    let response = next.run(request).await;
    if outcome(response.status()) == Outcome::Denied {
        access::record_refusal(state, &principal, kind, path.as_str(), requested, seen).await;
    }
    response
}
