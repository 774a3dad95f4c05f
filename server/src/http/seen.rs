//! What a request tells its audit events of itself: the peer's address, the `User-Agent`
//! (cut short), and the requested target with anything a caller typed freely left out.
//!
//! It names nothing else of the crate, so `authorize` and the recorder (`record`) both use
//! it without joining the modules that record events into a cycle.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::USER_AGENT;
use clinicdesk_protocol::audit::RequestSeen;
use uuid::Uuid;

/// Longest `User-Agent` kept in an event; the rest is cut (at a character boundary).
const MAX_USER_AGENT: usize = 256;

pub(crate) fn user_agent(headers: &axum::http::HeaderMap) -> String {
    let raw = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    raw.chars().take(MAX_USER_AGENT).collect()
}

/// What the server saw of a session's request made from `device_id` (peer address,
/// `User-Agent`); `None` without a peer, which every real connection has.
pub(crate) fn seen_of(request: &Request, device_id: Uuid) -> Option<RequestSeen> {
    let ConnectInfo(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()?;
    Some(RequestSeen {
        client_ip: peer.ip().to_string(),
        user_agent: user_agent(request.headers()),
        session_device_id: Some(device_id),
    })
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
