//! PHI reads: today's schedule, a patient's chart and the cache's patient finder. The one
//! path PHI takes to the UI is [`Core::read_phi`]: fetched online (or read from the user's
//! cache when the server cannot be reached), returned only after its view event is
//! committed to the outbox (fail closed, BRIEF 2), and only if the session that asked is
//! still the unlocked one (a lock during a fetch discards what it fetched).

use clinicdesk_protocol::app::PatientSearchResults;
use clinicdesk_protocol::audit::{AuditAction, BreakGlass};
use clinicdesk_protocol::wire::{AppointmentList, Patient};
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::cache::{self, Cache};
use crate::local::db::DbError;
use crate::local::outbox::Draft;
use crate::local::patient_search::PatientQuery;
use crate::net::client::ServerClient;

impl Core {
    /// Today's schedule, from the server or, offline, from the cache; audited either way
    /// before it is returned.
    pub async fn appointments(&self) -> Result<AppointmentList, AppError> {
        self.read_phi(
            |client, token| async move { client.appointments(&token).await },
            Cache::latest_appointments,
            |list, offline| Draft {
                action: AuditAction::View,
                resource_type: "Schedule",
                resource_id: list.date.clone(),
                patient_id: None,
                fields: vec!["starts_at".into(), "patient_name".into(), "reason".into()],
                offline,
                route: "schedule",
                break_glass: None,
            },
            cache::put_appointments,
        )
        .await
    }

    /// Patients in this user's encrypted cache matching `text` (words of a name, a date of
    /// birth or an MRN), online or offline. What is listed is audited first: one view event
    /// per patient shown (name, date of birth, MRN), committed together before the list is
    /// returned (fail closed). Not-a-search text is `bad_request` on `query`.
    pub fn search_patients(&self, text: &str) -> Result<PatientSearchResults, AppError> {
        let query = PatientQuery::parse(text).ok_or(AppError::BadInput("query"))?;
        let (_, generation) = self.session_snapshot()?;
        let now = self.clock.now_ms();
        let patients = self.with_unlocked(generation, |u, proof| {
            let hits = u.cache.search_patients(&query)?;
            let offline = u.token.is_none();
            let drafts: Vec<Draft> = hits
                .iter()
                .map(|hit| Draft {
                    action: AuditAction::View,
                    resource_type: "Patient",
                    resource_id: hit.id.to_string(),
                    patient_id: Some(hit.id),
                    fields: ["name", "birth_date", "mrn"].map(str::to_owned).to_vec(),
                    offline,
                    route: "patient_search",
                    break_glass: None,
                })
                .collect();
            if !drafts.is_empty() {
                proof.device().record_all(&u.key, &u.user, drafts, now)?;
            }
            Ok(hits)
        })?;
        self.device.want_upload();
        Ok(PatientSearchResults { patients })
    }

    /// One patient, from the server or, offline, from the cache. The view's audit event is
    /// committed to the outbox before the record is returned (fail closed).
    pub async fn open_patient(&self, patient_id: Uuid) -> Result<Patient, AppError> {
        self.read_patient(patient_id, |client, token| async move {
            client.patient(&token, patient_id).await
        })
        .await
    }

    /// [`Core::open_patient`] with the server's part as `request`.
    async fn read_patient<F, Fut>(&self, patient_id: Uuid, request: F) -> Result<Patient, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<Patient, AppError>>,
    {
        self.read_phi(
            request,
            |cache| cache.cached_patient(patient_id),
            |patient, offline| Draft {
                action: AuditAction::View,
                resource_type: "Patient",
                resource_id: patient.id.to_string(),
                patient_id: Some(patient.id),
                fields: patient.field_names(),
                offline,
                route: "patient",
                // A chart read under a break-glass grant is flagged on the device too.
                break_glass: patient.break_glass.as_ref().map(|g| BreakGlass {
                    reason_code: g.reason_code.as_str().to_owned(),
                    reason_text: g.reason_text.expose().clone(),
                }),
            },
            cache::put_patient,
        )
        .await
    }

    /// Reads PHI for the unlocked session: `request` to the server with its token, or
    /// `from_cache` when the server cannot be reached; then [`Core::record_view`]. The
    /// session is noted before the request and checked again after it, with no lock held
    /// in between.
    async fn read_phi<T, F, Fut>(
        &self,
        request: F,
        from_cache: impl FnOnce(&Cache) -> Result<Option<T>, DbError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), DbError>,
    ) -> Result<T, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let (token, generation) = self.session_snapshot()?;
        let fetched = self.fetch(token, request).await;
        self.record_view(generation, fetched, from_cache, draft, store)
    }

    /// The value fetched online, or read from the user's cache when the server cannot be
    /// reached, is returned only after its view event is committed to the outbox, and only
    /// if the session that asked (`generation`) is still the unlocked one: otherwise
    /// nothing is returned, recorded or cached. Online, the cache write follows the
    /// committed event: a crash in between leaves an event for a write that did not
    /// happen, never the reverse.
    fn record_view<T>(
        &self,
        generation: u64,
        fetched: Result<T, AppError>,
        from_cache: impl FnOnce(&Cache) -> Result<Option<T>, DbError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), DbError>,
    ) -> Result<T, AppError> {
        let (fetched, offline) = match fetched {
            Ok(value) => (Some(value), false),
            Err(AppError::Unreachable) => (None, true),
            Err(e) => return Err(self.on_server_error(e)),
        };
        let now = self.clock.now_ms();
        let value = self.with_unlocked(generation, |u, proof| {
            let value = match fetched {
                Some(value) => value,
                None => from_cache(&u.cache)?.ok_or(AppError::Unreachable)?,
            };
            proof
                .device()
                .record(&u.key, &u.user, draft(&value, offline), now)?;
            if !offline {
                u.cache.transaction(|tx| {
                    store(tx, &value, now)?;
                    cache::touch_online(tx, now)
                })?;
            }
            // A session kept open for hours raises the latest time the cache has seen too,
            // so a clock set back after it cannot stretch the offline limit.
            u.cache.note_time(now)?;
            Ok(value)
        })?;
        self.device.want_upload();
        Ok(value)
    }
}
