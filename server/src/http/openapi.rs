//! `/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::routes;

struct SessionAuth;

impl Modify for SessionAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ClinicDesk API", description = "TLS-only API of the ClinicDesk server."),
    paths(
        routes::health::healthz,
        openapi_json,
        routes::devices::enroll,
        routes::devices::revoke,
        routes::devices::release_escrow,
        routes::devices::list,
        routes::devices::report_offline_copy,
        routes::devices::issue_code,
        routes::session::challenge,
        routes::session::login,
        routes::session::logout,
        routes::session::change_password,
        routes::session::first_password,
        routes::clinics::provision,
        routes::mfa::verify_totp,
        routes::mfa::verify_recovery_code,
        routes::mfa::webauthn_challenge,
        routes::mfa::verify_webauthn,
        routes::mfa::setup_totp,
        routes::mfa::confirm_totp,
        routes::mfa::setup_webauthn_challenge,
        routes::mfa::setup_webauthn,
        routes::mfa::reset,
        routes::clinic::get_settings,
        routes::clinic::set_time_zone,
        routes::clinic::set_break_glass_reviewers,
        routes::imports::start,
        routes::imports::progress,
        routes::users::list,
        routes::users::create,
        routes::users::change_role,
        routes::users::deactivate,
        routes::schedule::today,
        routes::schedule::book,
        routes::schedule::practitioners,
        routes::hours::get_hours,
        routes::hours::set_hours,
        routes::hours::free_slots,
        routes::schedule::change,
        routes::schedule::get_appointment,
        routes::schedule::get_history,
        routes::patients::get_patient,
        routes::records::search,
        routes::records::register,
        routes::records::update,
        routes::records::get_record,
        routes::records::get_fhir_patient,
        routes::records::get_fhir_everything,
        routes::coverage::add,
        routes::coverage::list,
        routes::coverage::change,
        routes::coverage::history,
        routes::coverage::day_patients,
        routes::schedule::sync_patients,
        routes::records::get_history,
        routes::break_glass::open,
        routes::care_team::get_team,
        routes::care_team::add,
        routes::care_team::remove,
        routes::break_glass::queue,
        routes::break_glass::review,
        routes::audit::upload,
        routes::audit::search,
        routes::audit::inclusion,
        routes::audit::checkpoint,
        routes::audit::consistency,
        routes::audit::alerts,
        routes::audit::export,
        routes::audit::access_review,
        routes::audit::patient_report,
    ),
    modifiers(&SessionAuth)
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(spec())
}

/// The document as served. utoipa 5.5 writes a response link's fields in Rust's spelling
/// (`operation_id`, `operation_ref`, `request_body`); OpenAPI spells them in camel case, and
/// a client following the links (schemathesis's stateful phase) finds no target otherwise.
pub fn spec() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for response in paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
            .flat_map(|responses| responses.values_mut())
        {
            let links = response.get_mut("links").and_then(|l| l.as_object_mut());
            for link in links.into_iter().flat_map(|l| l.values_mut()) {
                let Some(link) = link.as_object_mut() else {
                    continue;
                };
                for (rust, openapi) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(rust) {
                        link.insert(openapi.to_owned(), value);
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation's path parameters are exactly the placeholders of its path template
    /// (a query parameter documented as a path one sends every client the wrong request).
    #[test]
    fn path_parameters_are_the_templates_placeholders() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let mut placeholders: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            placeholders.sort_unstable();
            for (method, operation) in item.as_object().unwrap() {
                let params = operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mut in_path: Vec<String> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                in_path.sort_unstable();
                assert_eq!(in_path, placeholders, "{method} {path}");
                for p in params.iter().filter(|p| p["in"] == "query") {
                    assert!(
                        !placeholders.contains(&p["name"].as_str().unwrap()),
                        "{method} {path}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} operations");
        // The break-glass queue's filter is an optional query parameter.
        let pending = &doc["paths"]["/v1/break-glass"]["get"]["parameters"][0];
        assert_eq!(
            (
                &pending["name"],
                &pending["in"],
                pending["required"].as_bool()
            ),
            (
                &serde_json::json!("pending"),
                &serde_json::json!("query"),
                Some(false)
            )
        );
    }

    /// Each history's answer names its schema, with the field type it carries.
    #[test]
    fn every_history_names_its_schema() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for path in [
            "/v1/patients/{patient_id}/history",
            "/v1/coverages/{coverage_id}/history",
            "/v1/appointments/{appointment_id}/history",
        ] {
            let body = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"];
            let text = body.to_string();
            let named = body["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .map(|name| schemas.contains_key(name))
                .unwrap_or(false);
            assert!(named || text.contains("versions"), "{path}: {text}");
        }
    }

    /// The document describes exactly the routes the policy table knows.
    /// Every response link names, in OpenAPI's spelling, an operation the document has.
    #[test]
    fn links_name_operations_of_this_document() {
        let doc = spec();
        let mut ids = std::collections::HashSet::new();
        let mut targets = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    ids.insert(id.to_owned());
                }
                let responses = op["responses"].as_object().into_iter().flatten();
                for (_, response) in responses {
                    for (name, link) in response["links"].as_object().into_iter().flatten() {
                        assert!(link.get("operation_id").is_none(), "{name}: {link}");
                        targets.push(link["operationId"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
        assert!(targets.len() >= 4, "the record's links are documented");
        for t in targets {
            assert!(ids.contains(&t), "a link names {t}, which is no operation");
        }
    }

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        for rule in clinicdesk_protocol::policy::ROUTES {
            let item = doc
                .paths
                .paths
                .get(rule.path)
                .unwrap_or_else(|| panic!("{} undocumented", rule.path));
            let method = serde_json::to_value(item).unwrap();
            assert!(
                method.get(rule.method.to_lowercase()).is_some(),
                "{} {} undocumented",
                rule.method,
                rule.path
            );
        }
    }
}
