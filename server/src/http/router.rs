//! The router: every route is registered together with its policy rule, and building the
//! router fails if a route has none (BRIEF invariant 6).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::{MethodRouter, get, patch, post, put};
use clinicdesk_protocol::policy;

use crate::error::ServerError;
use crate::http::routes;
use crate::state::AppState;

/// A route the router serves: method, axum path template and handler.
pub struct RouteDef {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn def(method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> RouteDef {
    RouteDef {
        method,
        path,
        handler,
    }
}

/// Every route of the API.
pub fn route_defs() -> Vec<RouteDef> {
    vec![
        def("GET", "/healthz", get(routes::health::healthz)),
        def(
            "GET",
            "/openapi.json",
            get(crate::http::openapi::openapi_json),
        ),
        def("POST", "/v1/devices/enroll", post(routes::devices::enroll)),
        def(
            "POST",
            "/v1/auth/challenge",
            post(routes::session::challenge),
        ),
        def("POST", "/v1/auth/login", post(routes::session::login)),
        def("POST", "/v1/auth/mfa/totp", post(routes::mfa::verify_totp)),
        def(
            "POST",
            "/v1/auth/mfa/recovery",
            post(routes::mfa::verify_recovery_code),
        ),
        def(
            "POST",
            "/v1/auth/mfa/webauthn/challenge",
            post(routes::mfa::webauthn_challenge),
        ),
        def(
            "POST",
            "/v1/auth/mfa/webauthn",
            post(routes::mfa::verify_webauthn),
        ),
        def(
            "POST",
            "/v1/auth/mfa/setup/totp",
            post(routes::mfa::setup_totp),
        ),
        def(
            "POST",
            "/v1/auth/mfa/setup/totp/confirm",
            post(routes::mfa::confirm_totp),
        ),
        def(
            "POST",
            "/v1/auth/mfa/setup/webauthn/challenge",
            post(routes::mfa::setup_webauthn_challenge),
        ),
        def(
            "POST",
            "/v1/auth/mfa/setup/webauthn",
            post(routes::mfa::setup_webauthn),
        ),
        def("POST", "/v1/auth/logout", post(routes::session::logout)),
        def(
            "PUT",
            "/v1/devices/this/offline-copy",
            put(routes::devices::report_offline_copy),
        ),
        def(
            "POST",
            "/v1/auth/password",
            post(routes::session::change_password),
        ),
        def("GET", "/v1/clinic", get(routes::clinic::get_settings)),
        def(
            "POST",
            "/v1/clinic/time-zone",
            post(routes::clinic::set_time_zone),
        ),
        def(
            "POST",
            "/v1/clinic/break-glass-reviewers",
            post(routes::clinic::set_break_glass_reviewers),
        ),
        def("POST", "/v1/imports", post(routes::imports::start)),
        def(
            "GET",
            "/v1/imports/{import_id}",
            get(routes::imports::progress),
        ),
        def(
            "GET",
            "/v1/practitioner-directory",
            get(routes::imports::directory),
        ),
        def(
            "PUT",
            "/v1/practitioner-directory/{entry_id}",
            put(routes::imports::link),
        ),
        def("GET", "/v1/users", get(routes::users::list)),
        def("POST", "/v1/clinics", post(routes::clinics::provision)),
        def(
            "POST",
            "/v1/auth/password/first",
            post(routes::session::first_password),
        ),
        def("POST", "/v1/users", post(routes::users::create)),
        def(
            "POST",
            "/v1/users/{user_id}/role",
            post(routes::users::change_role),
        ),
        def(
            "POST",
            "/v1/users/{user_id}/deactivate",
            post(routes::users::deactivate),
        ),
        def(
            "POST",
            "/v1/users/{user_id}/mfa/reset",
            post(routes::mfa::reset),
        ),
        def("GET", "/v1/appointments", get(routes::schedule::today)),
        def("POST", "/v1/appointments", post(routes::schedule::book)),
        def(
            "GET",
            "/v1/practitioners",
            get(routes::schedule::practitioners),
        ),
        def(
            "GET",
            "/v1/practitioners/{practitioner_id}/working-hours",
            get(routes::hours::get_hours),
        ),
        def(
            "PUT",
            "/v1/practitioners/{practitioner_id}/working-hours",
            put(routes::hours::set_hours),
        ),
        def(
            "GET",
            "/v1/practitioners/{practitioner_id}/free-slots",
            get(routes::hours::free_slots),
        ),
        def(
            "GET",
            "/v1/appointments/{appointment_id}",
            get(routes::schedule::get_appointment),
        ),
        def(
            "PATCH",
            "/v1/appointments/{appointment_id}",
            patch(routes::schedule::change),
        ),
        def(
            "GET",
            "/v1/appointments/{appointment_id}/history",
            get(routes::schedule::get_history),
        ),
        def("GET", "/v1/patients", get(routes::records::search)),
        def("POST", "/v1/patients", post(routes::records::register)),
        def(
            "GET",
            "/v1/patients/{patient_id}",
            get(routes::patients::get_patient),
        ),
        def(
            "PATCH",
            "/v1/patients/{patient_id}",
            patch(routes::records::update),
        ),
        def(
            "GET",
            "/v1/patients/{patient_id}/record",
            get(routes::records::get_record),
        ),
        def(
            "POST",
            "/v1/patients/{patient_id}/coverages",
            post(routes::coverage::add),
        ),
        def(
            "GET",
            "/v1/patients/{patient_id}/coverages",
            get(routes::coverage::list),
        ),
        def(
            "PATCH",
            "/v1/coverages/{coverage_id}",
            patch(routes::coverage::change),
        ),
        def(
            "GET",
            "/v1/coverages/{coverage_id}/history",
            get(routes::coverage::history),
        ),
        def(
            "GET",
            "/v1/day/patients",
            get(routes::coverage::day_patients),
        ),
        def(
            "GET",
            "/v1/sync/patients",
            get(routes::schedule::sync_patients),
        ),
        def(
            "GET",
            "/v1/fhir/Patient/{patient_id}",
            get(routes::records::get_fhir_patient),
        ),
        def(
            "GET",
            "/v1/fhir/Patient/{patient_id}/$everything",
            get(routes::records::get_fhir_everything),
        ),
        def(
            "GET",
            "/v1/patients/{patient_id}/history",
            get(routes::records::get_history),
        ),
        def(
            "POST",
            "/v1/patients/{patient_id}/break-glass",
            post(routes::break_glass::open),
        ),
        def(
            "GET",
            "/v1/patients/{patient_id}/care-team",
            get(routes::care_team::get_team),
        ),
        def(
            "POST",
            "/v1/patients/{patient_id}/care-team",
            post(routes::care_team::add),
        ),
        def(
            "POST",
            "/v1/patients/{patient_id}/care-team/{user_id}/remove",
            post(routes::care_team::remove),
        ),
        def("GET", "/v1/break-glass", get(routes::break_glass::queue)),
        def(
            "POST",
            "/v1/break-glass/{grant_id}/review",
            post(routes::break_glass::review),
        ),
        def("GET", "/v1/devices", get(routes::devices::list)),
        def(
            "POST",
            "/v1/devices/enrollment-codes",
            post(routes::devices::issue_code),
        ),
        def(
            "POST",
            "/v1/devices/{device_id}/revoke",
            post(routes::devices::revoke),
        ),
        def(
            "POST",
            "/v1/devices/escrow/release",
            post(routes::devices::release_escrow),
        ),
        def("POST", "/v1/audit/batches", post(routes::audit::upload)),
        def("GET", "/v1/audit/events", get(routes::audit::search)),
        def(
            "GET",
            "/v1/audit/events/{event_id}/inclusion",
            get(routes::audit::inclusion),
        ),
        def(
            "GET",
            "/v1/audit/checkpoint",
            get(routes::audit::checkpoint),
        ),
        def(
            "GET",
            "/v1/audit/consistency",
            get(routes::audit::consistency),
        ),
        def("GET", "/v1/audit/alerts", get(routes::audit::alerts)),
        def("GET", "/v1/audit/export", get(routes::audit::export)),
        def(
            "GET",
            "/v1/audit/patients/{patient_id}/report",
            get(routes::audit::patient_report),
        ),
        def(
            "GET",
            "/v1/audit/access-review",
            get(routes::audit::access_review),
        ),
    ]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouterError {
    #[error("route {method} {path} has no rule in clinicdesk_protocol::policy::ROUTES")]
    MissingRule {
        method: &'static str,
        path: &'static str,
    },
}

/// Builds the router from route definitions, refusing any route without a policy rule.
pub fn build_router_from(state: AppState, defs: Vec<RouteDef>) -> Result<Router, RouterError> {
    let mut router = Router::new();
    for d in defs {
        if policy::rule_for(d.method, d.path).is_none() {
            return Err(RouterError::MissingRule {
                method: d.method,
                path: d.path,
            });
        }
        router = router.route(d.path, d.handler);
    }
    // Layers run outermost-last-added: authorize, then the PHI access recorder.
    Ok(router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::record::record_phi_access,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::authorize::authorize,
        ))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::map_response(security_headers))
        .with_state(state))
}

/// The most a request body may hold: a full audit batch with room to spare.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A body declared bigger than [`BODY_LIMIT`] is refused before any of it is read (and
/// before authorization: nothing is learned from it); one that grows past the limit while
/// it is read is refused by the body extractor.
async fn refuse_oversized(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return axum::response::IntoResponse::into_response(ServerError::PayloadTooLarge);
    }
    next.run(request).await
}

pub fn build_router(state: AppState) -> Result<Router, RouterError> {
    build_router_from(state, route_defs())
}

/// HSTS on every response, and no caching of anything (responses may carry PHI).
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_rule_has_a_route_and_back() {
        let defs = route_defs();
        for rule in policy::ROUTES {
            assert!(
                defs.iter()
                    .any(|d| d.method == rule.method && d.path == rule.path),
                "stale rule {} {}",
                rule.method,
                rule.path
            );
        }
        for d in &defs {
            assert!(
                policy::rule_for(d.method, d.path).is_some(),
                "{} {}",
                d.method,
                d.path
            );
        }
    }
}
