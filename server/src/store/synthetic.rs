//! Synthetic clinic data written in bulk (`seed --clinics`): one clinic's patients,
//! coverages and appointments as version-0 rows (from before a record has a history, like
//! the demo seed's), in one transaction of multi-row INSERTs (`patients`, `coverages`,
//! `appointments`).

use super::*;
use crate::store::sql::Statement;

/// A seeded coverage: its id, its patient and its content (JSON text).
pub struct SeededCoverage {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub record: String,
}

/// A seeded appointment, as its columns hold it.
pub struct SeededAppointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub practitioner_id: Uuid,
    pub starts_at_ms: i64,
    pub duration_mins: i64,
    pub reason: String,
    /// FHIR's code (`booked`, `fulfilled`, `noshow`, ...).
    pub status: &'static str,
}

/// Rows per INSERT: well under both databases' limits on bound values.
const ROWS: usize = 100;

/// Runs `insert` (an `INSERT ... VALUES ` head) for `rows` in statements of [`ROWS`] rows,
/// each row's values bound by `bind`.
async fn insert_rows<T>(
    tx: &mut ClinicTx,
    backend: Backend,
    head: &str,
    rows: &[T],
    bind: impl Fn(&mut Statement, &T),
) -> Result<(), ServerError> {
    for chunk in rows.chunks(ROWS) {
        let mut st = Statement::new(head);
        for (i, row) in chunk.iter().enumerate() {
            st.push(if i == 0 { "(" } else { ", (" });
            bind(&mut st, row);
            st.push(")");
        }
        st.query_for(backend).execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// Writes one clinic's synthetic patients, coverages and appointments, all or nothing.
    pub async fn insert_synthetic(
        &self,
        scope: &ClinicScope,
        patients: &[NewPatient],
        coverages: &[SeededCoverage],
        appointments: &[SeededAppointment],
    ) -> Result<(), ServerError> {
        let clinic = scope.clinic_id().to_string();
        let backend = self.backend;
        let mut tx = self.clinic_tx(scope).await?;
        insert_rows(
            &mut tx,
            backend,
            "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, allergies,
                 problems, medications, record, given_key, family_key, phone_key) VALUES ",
            patients,
            |st, p| {
                st.bind(p.id.to_string())
                    .push(", ")
                    .bind(clinic.as_str())
                    .push(", ")
                    .bind(p.name.as_str())
                    .push(", ")
                    .bind(p.birth_date.as_str())
                    .push(", ")
                    .bind(p.mrn.as_str())
                    .push(", ")
                    .bind(p.phone.as_str())
                    .push(", '[]', '[]', '[]', ")
                    .bind(p.record.as_str())
                    .push(", ")
                    .bind(records::search_key(&p.given))
                    .push(", ")
                    .bind(records::search_key(&p.family))
                    .push(", ")
                    .bind(records::phone_key(&p.phone));
            },
        )
        .await?;
        insert_rows(
            &mut tx,
            backend,
            "INSERT INTO coverages (id, clinic_id, patient_id, record, version) VALUES ",
            coverages,
            |st, c| {
                st.bind(c.id.to_string())
                    .push(", ")
                    .bind(clinic.as_str())
                    .push(", ")
                    .bind(c.patient_id.to_string())
                    .push(", ")
                    .bind(c.record.as_str())
                    .push(", 0");
            },
        )
        .await?;
        insert_rows(
            &mut tx,
            backend,
            "INSERT INTO appointments (id, clinic_id, patient_id, starts_at_ms, reason,
                 practitioner_id, duration_mins, status) VALUES ",
            appointments,
            |st, a| {
                st.bind(a.id.to_string())
                    .push(", ")
                    .bind(clinic.as_str())
                    .push(", ")
                    .bind(a.patient_id.to_string())
                    .push(", ")
                    .bind(a.starts_at_ms)
                    .push(", ")
                    .bind(a.reason.as_str())
                    .push(", ")
                    .bind(a.practitioner_id.to_string())
                    .push(", ")
                    .bind(a.duration_mins)
                    .push(", ")
                    .bind(a.status);
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Gives a synthetic workstation a past: enrolled at `at_ms`, and each of `users` signed
    /// in on it then (as a session that is already over, so no token of it works), with
    /// the role they hold. A synthetic trail that spans the last month is then what such a
    /// workstation could have signed ([`crate::audit::claims`]).
    pub async fn backdate_synthetic_workstation(
        &self,
        scope: &ClinicScope,
        device: Uuid,
        users: &[(Uuid, Role)],
        at_ms: i64,
    ) -> Result<(), ServerError> {
        let clinic = scope.clinic_id().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE devices SET enrolled_at_ms = $1 WHERE id = $2 AND clinic_id = $3")
            .bind(at_ms)
            .bind(device.to_string())
            .bind(&clinic)
            .execute(&mut *tx)
            .await?;
        for (user, role) in users {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, clinic_id, device_id, created_at_ms,
                     last_seen_at_ms, revoked_at_ms, role)
                 VALUES ($1, $2, $3, $4, $5, $5, $5, $6)",
            )
            // No token hashes to this (a hash is hex): the session is a record, never a key.
            .bind(format!("synthetic-{}", Uuid::now_v7().simple()))
            .bind(user.to_string())
            .bind(&clinic)
            .bind(device.to_string())
            .bind(at_ms)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
