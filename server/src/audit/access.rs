//! Server-side auditing of every PHI response, by one mechanism: the policy table marks the
//! routes that serve PHI ([`PhiAccess`]), their handlers return [`Served`] (the body and
//! what it disclosed), and the recorder (`http::record`) has [`record_read`] sign and store
//! one server event per disclosed record before the response leaves. If the event cannot
//! be stored, or a PHI response does not say what it disclosed, the caller gets a plain 500
//! and no PHI.
//!
//! A PHI route's refusals (403, 404, ...) are recorded too, as `denied` or `failure`,
//! with the requested path as the resource: who tried to reach what is part of the trail.
//! That includes a role the policy table refuses before any handler runs
//! ([`record_refusal`], called by `authorize`).
//!
//! Reads of the audit trail itself (search, proofs, alerts, reports, exports, the
//! break-glass queue) are recorded the same way, one `AuditTrail` event per request.
//!
//! This module builds and stores the events; reading them off a request and a response is
//! the HTTP layer's part.

use clinicdesk_protocol::audit::{BreakGlass, Outcome, RequestSeen};
use clinicdesk_protocol::policy::PhiAccess;
use clinicdesk_protocol::wire::{
    AppointmentList, AppointmentRecord, CoverageList, FieldSet, Patient, PatientRecord,
    PatientSearchPage, RecordHistory,
};
use uuid::Uuid;

use super::server_chain::{self, ServerEvent};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::session::SessionTouch;
use crate::state::AppState;

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

/// One record, disclosing the fields named.
fn one_record(id: Uuid, patient_id: Option<Uuid>, fields: Vec<&'static str>) -> Vec<Disclosed> {
    vec![Disclosed {
        resource_id: id.to_string(),
        patient_id,
        fields: fields.into_iter().map(str::to_owned).collect(),
    }]
}

/// A history: one record, disclosing every field any of its versions carries.
fn a_history(
    id: Uuid,
    patient_id: Option<Uuid>,
    versions: impl Iterator<Item = Vec<&'static str>>,
) -> Vec<Disclosed> {
    let mut fields: Vec<&'static str> = Vec::new();
    for present in versions {
        for name in present {
            if !fields.contains(&name) {
                fields.push(name);
            }
        }
    }
    one_record(id, patient_id, fields)
}

impl Discloses for PatientRecord {
    fn disclosed(&self) -> Vec<Disclosed> {
        one_record(self.id, Some(self.id), self.fields.present())
    }
}

impl Discloses for crate::clinical::fhir_patient::FhirPatient {
    fn disclosed(&self) -> Vec<Disclosed> {
        vec![Disclosed {
            resource_id: self.id.to_string(),
            patient_id: Some(self.id),
            fields: self.fields.iter().map(|f| (*f).to_owned()).collect(),
        }]
    }
}

/// The patient's whole record: one disclosure of the patient, naming their own fields and
/// those of their other resources (`Coverage.payer`, `Appointment.start`, ...).
impl Discloses for crate::clinical::fhir_everything::FhirEverything {
    fn disclosed(&self) -> Vec<Disclosed> {
        vec![Disclosed {
            resource_id: self.patient_id.to_string(),
            patient_id: Some(self.patient_id),
            fields: self.fields.clone(),
        }]
    }
}

/// The day's patients: one disclosure per patient, naming their own fields and their
/// coverages' (`Coverage.payer`, ...), like their whole record's.
impl Discloses for clinicdesk_protocol::wire::DayPatients {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.patients
            .iter()
            .map(|p| Disclosed {
                resource_id: p.record.id.to_string(),
                patient_id: Some(p.record.id),
                fields: p.disclosed_fields(),
            })
            .collect()
    }
}

/// A page of the offline copy: one disclosure per patient, naming their chart's fields,
/// their record's and their coverages' (`Coverage.payer`, ...), as the app's view does.
impl Discloses for clinicdesk_protocol::wire::SyncPage {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.patients
            .iter()
            .map(|p| Disclosed {
                resource_id: p.chart.id.to_string(),
                patient_id: Some(p.chart.id),
                fields: p.disclosed_fields(),
            })
            .collect()
    }
}

/// A search discloses each patient it returned, with the fields shown.
impl Discloses for PatientSearchPage {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.results.iter().flat_map(Discloses::disclosed).collect()
    }
}

/// A search by SSN discloses, besides what each result shows, that the number is theirs.
impl Discloses for crate::clinical::records::SearchAnswer {
    fn disclosed(&self) -> Vec<Disclosed> {
        let mut all = self.page.disclosed();
        if self.by_ssn {
            for d in &mut all {
                d.fields.push("ssn".to_owned());
            }
        }
        all
    }
}

/// A history discloses every field any of its versions carries.
impl<F: FieldSet> Discloses for RecordHistory<F> {
    fn disclosed(&self) -> Vec<Disclosed> {
        a_history(
            self.id,
            Some(self.patient_id),
            self.versions.iter().map(|v| v.fields.present()),
        )
    }
}

impl Discloses for CoverageList {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.coverages
            .iter()
            .flat_map(|c| one_record(c.id, Some(c.patient_id), c.fields.present()))
            .collect()
    }
}

impl Discloses for AppointmentRecord {
    fn disclosed(&self) -> Vec<Disclosed> {
        one_record(self.id, self.fields.patient_id, self.fields.present())
    }
}

impl Discloses for AppointmentList {
    fn disclosed(&self) -> Vec<Disclosed> {
        self.appointments
            .iter()
            .map(|a| Disclosed {
                resource_id: a.id.to_string(),
                patient_id: Some(a.patient_id),
                fields: [
                    "starts_at",
                    "patient_name",
                    "reason",
                    "status",
                    "practitioner_id",
                    "duration_mins",
                ]
                .map(str::to_owned)
                .to_vec(),
            })
            .collect()
    }
}

/// The response of a PHI handler: a JSON body and what it disclosed, which the recorder
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

impl<T: Discloses> Served<T> {
    /// The body to send, and what it discloses for the recorder.
    pub fn into_disclosure(self) -> (T, Disclosure) {
        let disclosure = Disclosure {
            records: self.body.disclosed(),
            break_glass: self.break_glass,
        };
        (self.body, disclosure)
    }
}

/// What a PHI response disclosed. Only [`Served`] makes one, so a handler cannot declare a
/// disclosure its body does not make.
#[derive(Clone)]
pub struct Disclosure {
    records: Vec<Disclosed>,
    break_glass: Option<BreakGlass>,
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

/// What a recorded read answered.
pub enum Answer {
    /// A PHI route's success: the records its body disclosed.
    Disclosed(Disclosure),
    /// Any other answer of a PHI route, and every answer of the trail's routes: one event
    /// naming the request's target (ids and codes only, no free text).
    Target { outcome: Outcome, target: String },
}

/// Signs and stores the events of a read's answer (a PHI route's, or the audit trail's, as
/// `read` says), one per record disclosed or else one for the target, writing the
/// session's last-seen time in the same transaction. On an error the caller must not send
/// the answer: no event, no PHI.
pub async fn record_read(
    state: &AppState,
    principal: &Principal,
    read: PhiAccess,
    route: &str,
    seen: RequestSeen,
    answer: Answer,
    touch: Option<&SessionTouch>,
) -> Result<(), ServerError> {
    let events = events(principal, read, route, &seen, answer);
    let scope = ClinicScope::of_principal(principal);
    server_chain::record_with(state, &scope, events, touch).await
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
    let refused = Answer::Target {
        outcome: Outcome::Denied,
        target: requested,
    };
    let events = events(principal, phi, route, &seen, refused);
    let scope = ClinicScope::of_principal(principal);
    if let Err(e) = server_chain::record(state, &scope, events).await {
        tracing::error!(error = %e, route, "a refused PHI request could not be recorded");
    }
}

/// The server events of an answer.
fn events(
    principal: &Principal,
    read: PhiAccess,
    route: &str,
    seen: &RequestSeen,
    answer: Answer,
) -> Vec<ServerEvent> {
    let event = |outcome, d: Disclosed, break_glass: Option<BreakGlass>| ServerEvent {
        actor_user_id: principal.user.user_id,
        actor_role: principal.user.role,
        action: read.action,
        resource_type: read.resource_type.to_owned(),
        resource_id: d.resource_id,
        patient_id: d.patient_id,
        fields: d.fields,
        outcome,
        route: route.to_owned(),
        break_glass,
        request: seen.clone(),
        change: None,
    };
    match answer {
        Answer::Disclosed(Disclosure {
            records,
            break_glass,
        }) => records
            .into_iter()
            .map(|d| event(Outcome::Success, d, break_glass.clone()))
            .collect(),
        Answer::Target { outcome, target } => vec![event(
            outcome,
            Disclosed {
                resource_id: target,
                // Not an access to the patient's record: the target names whom it asked
                // about, and the patient's own access report stays a list of who read
                // their record.
                patient_id: None,
                fields: Vec::new(),
            },
            None,
        )],
    }
}
