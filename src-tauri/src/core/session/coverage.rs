//! A patient's insurance coverage and the history of their record, for the front desk and
//! billing: read online (each read recorded as a view before it is returned), changed
//! through the queue like every change made in the app ([`super::changes`]).

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{CoverageChange, CoverageFields, CoverageList, PatientHistory};
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::changes::Change;
use crate::local::outbox::Draft;

fn view(
    resource_type: &'static str,
    patient_id: Uuid,
    fields: Vec<String>,
    route: &'static str,
    offline: bool,
) -> Draft {
    Draft {
        action: AuditAction::View,
        resource_type,
        resource_id: patient_id.to_string(),
        patient_id: Some(patient_id),
        fields,
        offline,
        route,
        break_glass: None,
    }
}

impl Core {
    /// The patient's coverages, active or not (online only: not kept offline).
    pub async fn coverages(&self, patient_id: Uuid) -> Result<CoverageList, AppError> {
        self.read_phi(
            |c, t| async move { c.coverages(&t, patient_id).await },
            |_, _| Ok(None),
            |list, offline| {
                let mut fields: Vec<String> = Vec::new();
                for c in &list.coverages {
                    for name in c.fields.present() {
                        if !fields.iter().any(|f| f == name) {
                            fields.push(name.to_owned());
                        }
                    }
                }
                view("Coverage", list.patient_id, fields, "coverages", offline)
            },
            |_, _, _| Ok(()),
        )
        .await
    }

    /// Every version of the patient's registration record: who changed what, when, why
    /// (online only).
    pub async fn patient_history(&self, patient_id: Uuid) -> Result<PatientHistory, AppError> {
        self.read_phi(
            |c, t| async move { c.patient_history(&t, patient_id).await },
            |_, _| Ok(None),
            |history, offline| {
                let mut fields: Vec<String> = Vec::new();
                for v in &history.versions {
                    for name in v.fields.present() {
                        if !fields.iter().any(|f| f == name) {
                            fields.push(name.to_owned());
                        }
                    }
                }
                view(
                    "Patient",
                    history.patient_id,
                    fields,
                    "patient_history",
                    offline,
                )
            },
            |_, _, _| Ok(()),
        )
        .await
    }

    /// Adds a coverage (`payer` and `member_id` required).
    pub async fn add_coverage(
        &self,
        patient_id: Uuid,
        fields: CoverageFields,
    ) -> Result<ChangeSummary, AppError> {
        for (field, value) in [("payer", &fields.payer), ("member_id", &fields.member_id)] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(AppError::BadInput(field));
            }
        }
        let change = Change::AddCoverage {
            id: Uuid::new_v4(),
            patient_id,
            coverage: CoverageChange {
                fields,
                reason: Phi::new(String::new()),
            },
        };
        self.make_change(change, |_, _| Ok(())).await
    }

    /// Changes a coverage, based on the version the user saw.
    pub async fn update_coverage(
        &self,
        coverage_id: Uuid,
        patient_id: Uuid,
        based_on: u64,
        fields: CoverageFields,
        reason: Phi<String>,
    ) -> Result<ChangeSummary, AppError> {
        if fields.present().is_empty() {
            return Err(AppError::BadInput("fields"));
        }
        let change = Change::UpdateCoverage {
            id: coverage_id,
            patient_id,
            based_on,
            coverage: CoverageChange { fields, reason },
        };
        self.make_change(change, |_, _| Ok(())).await
    }
}
