//! Audit events as FHIR R4 AuditEvent resources in a `collection` Bundle, mapped against the
//! R4 AuditEvent StructureDefinition and its official examples (type and subtype, action,
//! recorded, outcome, agent with who, role and network address, source observer = the
//! workstation or the server, entity = the patient and the resource read). A test checks the
//! output with an independent validator (`fhir.resources`, R4B models).

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Outcome, Recorder};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ServerError;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const ACTION_SYSTEM: &str = "urn:clinicdesk:audit-action";
const ROLE_SYSTEM: &str = "urn:clinicdesk:role";
const USER_SYSTEM: &str = "urn:clinicdesk:user";
const DEVICE_SYSTEM: &str = "urn:clinicdesk:device";
const HASH_EXTENSION: &str = "urn:clinicdesk:fhir:extension:audit-event-hash";

/// UTC milliseconds as a FHIR `instant`, e.g. `2026-11-23T12:00:00.123Z`.
pub fn instant(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    let mut s = t.replace_nanosecond(0).ok()?.format(&Rfc3339).ok()?;
    // Rfc3339 of a whole second ends in `Z`; put the milliseconds before it.
    s.pop();
    Some(format!("{s}.{:03}Z", ms.rem_euclid(1000)))
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// AuditEvent.type: what kind of event, from the codes the R4 examples use.
fn event_type(action: AuditAction) -> Value {
    use AuditAction::*;
    match action {
        View | Create | Update | Delete => coding(EVENT_TYPE, "rest", "RESTful Operation"),
        Export | Print => coding(DCM, "110106", "Export"),
        Login | Logout | Lock | Unlock => coding(DCM, "110114", "User Authentication"),
        BreakGlass | BreakGlassReviewed | TamperAlert | ReceivedAfterRevocation | ClaimFlagged => {
            coding(DCM, "110113", "Security Alert")
        }
        DeviceEnrolled | DeviceRevoked | DeviceSecretReleased | MfaEnrolled | MfaReset => {
            coding(DCM, "110113", "Security Alert")
        }
        UserCreated | RoleChanged | UserDeactivated | PasswordChanged => {
            coding(DCM, "110136", "Security Roles Changed")
        }
    }
}

/// AuditEvent.action: C, R, U, D or E (execute).
fn action_code(action: AuditAction) -> &'static str {
    match action {
        AuditAction::Create => "C",
        AuditAction::View => "R",
        AuditAction::Update => "U",
        AuditAction::Delete => "D",
        _ => "E",
    }
}

/// AuditEvent.outcome: 0 success, 4 minor failure (refused), 8 serious failure.
fn outcome_code(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Failure => "8",
    }
}

/// One AuditEvent resource.
pub fn resource(e: &AuditEvent, hash_hex: &str) -> Result<Value, ServerError> {
    let recorded = instant(e.occurred_at_ms).ok_or(ServerError::Internal("time out of range"))?;
    let mut user = json!({
        "type": { "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "humanuser",
            "human user",
        )] },
        "role": [{ "coding": [{ "system": ROLE_SYSTEM, "code": e.actor_role.as_str() }] }],
        "who": { "identifier": { "system": USER_SYSTEM, "value": e.actor_user_id.to_string() } },
        "requestor": true,
    });
    let mut agents = Vec::new();
    if let Some(seen) = &e.request {
        // "2": an IP address.
        user["network"] = json!({ "address": seen.client_ip, "type": "2" });
        agents.push(user);
        let mut app = json!({
            "type": { "coding": [coding(DCM, "110150", "Application")] },
            "requestor": false,
            "network": { "address": seen.client_ip, "type": "2" },
        });
        if !seen.user_agent.is_empty() {
            app["name"] = json!(seen.user_agent);
        }
        if let Some(device) = seen.session_device_id {
            app["who"] =
                json!({ "identifier": { "system": DEVICE_SYSTEM, "value": device.to_string() } });
        }
        agents.push(app);
    } else {
        agents.push(user);
    }
    let (source_code, source_display) = match e.recorded_by {
        Recorder::Device => ("1", "User Device"),
        Recorder::Server => ("4", "Application Server"),
    };
    let mut entities = Vec::new();
    if let Some(patient) = e.patient_id {
        entities.push(json!({
            "what": { "reference": format!("Patient/{patient}") },
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let mut details = vec![json!({ "type": "route", "valueString": e.route })];
    if !e.fields.is_empty() {
        details.push(json!({ "type": "fields", "valueString": e.fields.join(",") }));
    }
    if e.offline {
        details.push(json!({ "type": "offline", "valueString": "true" }));
    }
    entities.push(json!({
        "what": { "identifier": {
            "system": format!("urn:clinicdesk:resource:{}", e.resource_type),
            "value": e.resource_id,
        } },
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "name": e.resource_type,
        "detail": details,
    }));
    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": e.id.to_string(),
        "extension": [{ "url": HASH_EXTENSION, "valueString": hash_hex }],
        "type": event_type(e.action),
        "subtype": [{ "system": ACTION_SYSTEM, "code": e.action.as_str() }],
        "action": action_code(e.action),
        "recorded": recorded,
        "outcome": outcome_code(e.outcome),
        "agent": agents,
        "source": {
            "site": e.clinic_id.to_string(),
            "observer": { "identifier": { "system": DEVICE_SYSTEM, "value": e.device_id.to_string() } },
            "type": [coding(SOURCE_TYPE, source_code, source_display)],
        },
        "entity": entities,
    });
    if e.outcome != Outcome::Success {
        r["outcomeDesc"] = json!(e.outcome.as_str());
    }
    if let Some(b) = &e.break_glass {
        r["purposeOfEvent"] = json!([{
            "coding": [{ "system": "urn:clinicdesk:break-glass-reason", "code": b.reason_code }],
            "text": b.reason_text,
        }]);
    }
    Ok(r)
}

/// One Bundle entry, as JSON text.
pub fn entry(e: &AuditEvent, hash_hex: &str) -> Result<String, ServerError> {
    let entry = json!({
        "fullUrl": format!("urn:uuid:{}", e.id),
        "resource": resource(e, hash_hex)?,
    });
    serde_json::to_string(&entry).map_err(|_| ServerError::Internal("fhir json"))
}

/// The Bundle up to its first entry; entries follow comma-separated, then [`bundle_end`].
pub fn bundle_start(now_ms: i64) -> Result<String, ServerError> {
    let timestamp = instant(now_ms).ok_or(ServerError::Internal("time out of range"))?;
    Ok(format!(
        r#"{{"resourceType":"Bundle","id":"{}","type":"collection","timestamp":"{timestamp}","entry":["#,
        uuid::Uuid::now_v7()
    ))
}

pub fn bundle_end() -> String {
    "]}\n".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_have_milliseconds_and_utc() {
        assert_eq!(
            instant(1_795_435_200_007).unwrap(),
            "2026-11-23T12:00:00.007Z"
        );
        assert_eq!(instant(0).unwrap(), "1970-01-01T00:00:00.000Z");
    }
}
