//! A patient's insurance coverage and the history of their record, for the front desk and
//! billing: coverages read online and kept for offline, a record's history online (each
//! read recorded as a view before it is returned), changed
//! through the queue like every change made in the app ([`super::changes`]).

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{
    CoverageChange, CoverageFields, CoverageList, CoverageRecord, DayPatients, PatientHistory,
};
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::changes::Change;
use crate::local::outbox::Draft;
use crate::local::{cache, minimum};

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
    /// The patients booked on `date` (`YYYY-MM-DD`, the clinic's day; today there when
    /// `None`) with their coverages: billing's working list, and the front desk's check of
    /// coverage before the day's visits. Online only (nothing of it is kept offline). One
    /// view per patient listed, committed together before the list is returned.
    pub async fn day_patients(&self, date: Option<String>) -> Result<DayPatients, AppError> {
        if let Some(d) = &date
            && d.parse::<jiff::civil::Date>().is_err()
        {
            return Err(AppError::BadInput("date"));
        }
        self.send_changes_first().await?;
        let (token, generation) = self.session_snapshot()?;
        let list = match self
            .fetch(token, |c, t| async move {
                c.day_patients(&t, date.as_deref()).await
            })
            .await
        {
            Ok(list) => list,
            Err(AppError::Unreachable) => return Err(AppError::Unreachable),
            Err(e) => return Err(self.refused_in(generation, e).await),
        };
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let drafts: Vec<Draft> = list
                .patients
                .iter()
                .map(|p| {
                    view(
                        "Patient",
                        p.record.id,
                        p.disclosed_fields(),
                        "day_patients",
                        false,
                    )
                })
                .collect();
            if !drafts.is_empty() {
                proof.device().record_all(&u.key, &u.user, drafts, now)?;
            }
            Ok(())
        })?;
        self.device.want_upload();
        Ok(list)
    }

    /// The patient's coverages, active or not: from the server, kept for offline; offline,
    /// as last read here (the sync pass keeps those of the user's days), cut to the role.
    pub async fn coverages(&self, patient_id: Uuid) -> Result<CoverageList, AppError> {
        self.read_phi(
            |c, t| async move { c.coverages(&t, patient_id).await },
            move |cache, role| Ok(minimum::coverages(role, cache.coverages(patient_id)?)),
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
            cache::put_coverages,
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
        let id = Uuid::new_v4();
        let shown = CoverageRecord {
            id,
            patient_id,
            version: 0,
            fields: fields.clone(),
        };
        let change = Change::AddCoverage {
            id,
            patient_id,
            coverage: CoverageChange {
                fields,
                reason: Phi::new(String::new()),
            },
        };
        self.make_change(change, move |tx, now| cache::add_coverage(tx, shown, now))
            .await
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
        let shown = fields.clone();
        let change = Change::UpdateCoverage {
            id: coverage_id,
            patient_id,
            based_on,
            coverage: CoverageChange { fields, reason },
        };
        self.make_change(change, move |tx, now| {
            cache::change_coverage(tx, patient_id, coverage_id, &shown, based_on + 1, now)
        })
        .await
    }
}
