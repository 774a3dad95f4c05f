//! Patients and appointments: clinic data, always through a [`ClinicScope`].

use super::*;

/// A synthetic patient as seeded.
pub struct NewPatient {
    pub id: Uuid,
    pub name: String,
    pub birth_date: String,
    /// The clinic's medical record number, unique within the clinic.
    pub mrn: String,
    pub phone: String,
    pub allergies: Vec<String>,
    pub problems: Vec<String>,
    pub medications: Vec<String>,
    /// The registration content as stored (JSON text; see `clinical::records`), version 0.
    pub record: String,
    /// The name's parts, for searches.
    pub given: String,
    pub family: String,
}

impl Store {
    pub async fn insert_patient(
        &self,
        scope: &ClinicScope,
        p: &NewPatient,
    ) -> Result<(), ServerError> {
        let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut tx = self.clinic_tx(scope).await?;
        sqlx::query(
            "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, allergies, problems,
                 medications, record, given_key, family_key, phone_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(p.id.to_string())
        .bind(scope.clinic_id().to_string())
        .bind(&p.name)
        .bind(&p.birth_date)
        .bind(&p.mrn)
        .bind(&p.phone)
        .bind(list(&p.allergies))
        .bind(list(&p.problems))
        .bind(list(&p.medications))
        .bind(&p.record)
        .bind(super::records::search_key(&p.given))
        .bind(super::records::search_key(&p.family))
        .bind(super::records::phone_key(&p.phone))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A seeded appointment (version 0, before it has a history), with `practitioner`.
    pub async fn insert_appointment(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
        practitioner: Option<Uuid>,
        starts_at_ms: i64,
        reason: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        sqlx::query(
            "INSERT INTO appointments (id, clinic_id, patient_id, starts_at_ms, reason,
                 practitioner_id)
             SELECT $1, $2, id, $3, $4, $7 FROM patients WHERE id = $5 AND clinic_id = $6",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(scope.clinic_id().to_string())
        .bind(starts_at_ms)
        .bind(reason)
        .bind(patient_id.to_string())
        .bind(scope.clinic_id().to_string())
        .bind(practitioner.map(|p| p.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appointments of the scope's clinic in `[from_ms, to_ms)`, earliest first.
    pub async fn appointments(
        &self,
        scope: &ClinicScope,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(Appointment, i64)>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let rows = sqlx::query(
            "SELECT a.id, a.patient_id, a.starts_at_ms, p.name, a.reason, a.status,
                 a.practitioner_id, a.duration_mins, a.version
             FROM appointments a JOIN patients p ON p.id = a.patient_id AND p.clinic_id = a.clinic_id
             WHERE a.clinic_id = $1 AND a.starts_at_ms >= $2 AND a.starts_at_ms < $3
             ORDER BY a.starts_at_ms, a.id",
        )
        .bind(scope.clinic_id().to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|row| {
                let starts_at_ms: i64 = row.get(2);
                Ok((
                    Appointment {
                        id: parse_uuid(&row.get::<String, _>(0))?,
                        patient_id: parse_uuid(&row.get::<String, _>(1))?,
                        starts_at: String::new(),
                        patient_name: Phi::new(row.get(3)),
                        reason: Phi::new(row.get(4)),
                        status: serde_json::from_value(serde_json::Value::String(row.get(5))).ok(),
                        practitioner_id: row
                            .get::<Option<String>, _>(6)
                            .as_deref()
                            .map(parse_uuid)
                            .transpose()?,
                        duration_mins: u32::try_from(row.get::<i64, _>(7)).ok(),
                        version: u64::try_from(row.get::<i64, _>(8)).ok(),
                    },
                    starts_at_ms,
                ))
            })
            .collect()
    }

    /// The ids of the scope's patients, in id order (no content is read).
    pub async fn patient_ids(&self, scope: &ClinicScope) -> Result<Vec<Uuid>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 ORDER BY id")
                .bind(scope.clinic_id().to_string())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        ids.iter().map(|s| parse_uuid(s)).collect()
    }

    /// Whether the patient is one of the clinic's (no content is read).
    pub async fn is_clinic_patient(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
    ) -> Result<bool, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let found = patient_exists(&mut tx, patient_id).await?;
        tx.commit().await?;
        Ok(found)
    }
}

/// Whether the patient is one of the transaction's clinic's (no content is read).
pub async fn patient_exists(tx: &mut ClinicTx, patient_id: Uuid) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM patients WHERE id = $1 AND clinic_id = $2")
            .bind(patient_id.to_string())
            .bind(clinic)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// A patient of the transaction's clinic, with the clinical summary if `with_clinical`;
/// another clinic's patient is `None`, exactly like one that does not exist.
pub async fn patient(
    tx: &mut ClinicTx,
    patient_id: Uuid,
    with_clinical: bool,
) -> Result<Option<Patient>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT name, birth_date, phone, allergies, problems, medications, mrn
             FROM patients WHERE id = $1 AND clinic_id = $2",
    )
    .bind(patient_id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let list = |i: usize| -> Result<Phi<Vec<String>>, ServerError> {
        serde_json::from_str(&row.get::<String, _>(i))
            .map(Phi::new)
            .map_err(|_| ServerError::Internal("stored list malformed"))
    };
    let clinical = if with_clinical {
        Some(ClinicalSummary {
            allergies: list(3)?,
            problems: list(4)?,
            medications: list(5)?,
        })
    } else {
        None
    };
    Ok(Some(Patient {
        id: patient_id,
        name: Phi::new(row.get(0)),
        birth_date: Phi::new(row.get(1)),
        mrn: Phi::new(row.get(6)),
        phone: Phi::new(row.get(2)),
        clinical,
        clinical_access: Default::default(),
        break_glass: None,
    }))
}
