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
        routes::imports::directory,
        routes::imports::link,
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
    patient_request_schemas(&mut doc);
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

/// Text the server stores: no control characters, at most 200 characters
/// (`records::text_ok`).
const TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]{0,200}$";

/// The patient fields a registration or a change may carry, with the values the server
/// accepts (`records::validate`), so that a client generating requests from this document
/// (schemathesis) registers patients and follows the links from them. A request-only
/// schema: records read back may hold what older rules or an import let in, so
/// `PatientFields` (the answers') states no more than the types. `identifiers` come from an
/// import only. A birth date here is a date from 1900 to 2019 (days to the 28th, so every
/// one exists); the server takes any past date from 1850.
fn patient_fields_written() -> serde_json::Value {
    let text = serde_json::json!({ "type": "string", "pattern": TEXT });
    // Not blank: a character that is neither a space nor a control.
    let some_text = serde_json::json!({
        "type": "string",
        "maxLength": 200,
        "pattern": r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
    });
    let object = |properties: serde_json::Value, required: &[&str]| {
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": properties,
            "required": required,
        })
    };
    let mut fields = object(
        serde_json::json!({
            "mrn": { "type": "string", "pattern": "^[A-Za-z0-9-]{1,32}$" },
            "ssn": { "type": "string", "pattern": "^([0-9]{3}-[0-9]{2}-[0-9]{4})?$" },
            "name": object(
                serde_json::json!({ "given": text, "family": some_text, "preferred": text }),
                &["given", "family"],
            ),
            "birth_date": {
                "type": "string",
                "pattern": "^(19[0-9]{2}|20[01][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$",
            },
            "gender": { "$ref": "#/components/schemas/Gender" },
            "phone": { "type": "string", "pattern": r"^[0-9 +().-]{0,32}$" },
            "email": {
                "type": "string",
                "maxLength": 200,
                "pattern": r"^([^\x00-\x1f\x7f-\x9f@]*@[^\x00-\x1f\x7f-\x9f]*)?$",
            },
            "address": object(
                serde_json::json!({
                    "line": { "type": "array", "items": text, "maxItems": 3 },
                    "city": text,
                    "state": text,
                    "postal_code": text,
                    "country": text,
                }),
                &[],
            ),
            "language": { "type": "string", "pattern": "^[A-Za-z0-9-]{0,35}$" },
            "emergency_contact": object(
                serde_json::json!({ "name": text, "relationship": text, "phone": text }),
                &[],
            ),
            "active": { "type": "boolean" },
        }),
        &[],
    );
    fields["description"] = "The patient fields a request may carry (one at least)".into();
    fields["minProperties"] = 1.into();
    fields
}

/// Points the patient registration's and change's `fields` at the request-only schemas
/// ([`patient_fields_written`]; a registration's with `name` and `birth_date` required).
fn patient_request_schemas(doc: &mut serde_json::Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    let written = patient_fields_written();
    let mut registered = written.clone();
    registered["required"] = serde_json::json!(["name", "birth_date"]);
    registered["description"] = "The patient fields a registration carries".into();
    schemas.insert("PatientFieldsWritten".into(), written);
    schemas.insert("PatientFieldsRegistered".into(), registered);
    if let Some(reason) = schemas
        .get_mut("PatientUpdate")
        .and_then(|b| b.pointer_mut("/properties/reason"))
    {
        *reason = serde_json::json!({ "type": "string", "pattern": TEXT });
    }
    for (body, fields) in [
        ("PatientRegistration", "PatientFieldsRegistered"),
        ("PatientUpdate", "PatientFieldsWritten"),
    ] {
        if let Some(property) = schemas
            .get_mut(body)
            .and_then(|b| b.pointer_mut("/properties/fields"))
        {
            *property = serde_json::json!({ "$ref": format!("#/components/schemas/{fields}") });
        }
    }
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

    /// A registration's and a change's fields are the request-only schemas, which name
    /// every patient field but the imported identifiers (a registration requiring name and
    /// birth date), each property of a nested value too; answers keep `PatientFields`.
    #[test]
    fn patient_requests_state_the_values_the_server_accepts() {
        let doc = spec();
        let schemas = &doc["components"]["schemas"];
        let fields_of = |body: &str| schemas[body]["properties"]["fields"]["$ref"].clone();
        assert_eq!(
            fields_of("PatientRegistration"),
            "#/components/schemas/PatientFieldsRegistered"
        );
        assert_eq!(
            fields_of("PatientUpdate"),
            "#/components/schemas/PatientFieldsWritten"
        );
        assert_eq!(
            schemas["PatientFieldsRegistered"]["required"],
            serde_json::json!(["name", "birth_date"])
        );
        let written = &schemas["PatientFieldsWritten"]["properties"];
        let names: Vec<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = clinicdesk_protocol::wire::PatientFields::NAMES
            .iter()
            .copied()
            .filter(|n| *n != "identifiers")
            .collect();
        expected.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, expected);
        // Nested values name the wire's fields (an unknown one is refused).
        for (field, wire) in [
            (
                "name",
                serde_json::to_value(clinicdesk_protocol::wire::HumanName::default()),
            ),
            (
                "address",
                serde_json::to_value(clinicdesk_protocol::wire::Address::default()),
            ),
            (
                "emergency_contact",
                serde_json::to_value(clinicdesk_protocol::wire::EmergencyContact::default()),
            ),
        ] {
            let mut stated: Vec<String> = written[field]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let mut actual: Vec<String> =
                wire.unwrap().as_object().unwrap().keys().cloned().collect();
            stated.sort_unstable();
            actual.sort_unstable();
            assert_eq!(stated, actual, "{field}");
        }
        assert!(schemas["Gender"].is_object());
        let read = &doc["paths"]["/v1/patients/{patient_id}"]["get"]["responses"]["200"];
        assert!(!read.to_string().contains("PatientFieldsWritten"));
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
