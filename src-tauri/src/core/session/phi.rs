//! PHI reads: today's schedule, a patient's chart and the cache's patient finder. The one
//! path PHI takes to the UI is [`Core::read_phi`]: fetched online (or read from the user's
//! cache when the server cannot be reached), returned only after its view event is
//! committed to the outbox (fail closed, BRIEF 2), and only if the session that asked is
//! still the unlocked one (a lock during a fetch discards what it fetched).

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{PatientHit, PatientSearchResults, SearchSource};
use clinicdesk_protocol::audit::{AuditAction, BreakGlass};
use clinicdesk_protocol::phi::Phi;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{AppointmentList, Patient, PatientRecord};
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::cache::{self, Cache};
use crate::local::db::DbError;
use crate::local::minimum;
use crate::local::outbox::Draft;
use crate::local::patient_search::PatientQuery;
use crate::net::client::ServerClient;

/// A match of the server's search, as the finder lists it.
fn hit_of(record: PatientRecord) -> PatientHit {
    let f = record.fields;
    PatientHit {
        id: record.id,
        name: Phi::new(f.name.map(|n| n.display()).unwrap_or_default()),
        birth_date: Phi::new(f.birth_date.unwrap_or_default()),
        mrn: Phi::new(f.mrn.unwrap_or_default()),
    }
}

impl Core {
    /// Today's schedule, from the server or, offline, from the cache; audited either way
    /// before it is returned.
    pub async fn appointments(&self) -> Result<AppointmentList, AppError> {
        self.schedule(None).await
    }

    /// A registration record: `request` to the server, or `from_cache` offline.
    pub(super) async fn read_record<F, Fut>(
        &self,
        request: F,
        from_cache: impl FnOnce(&Cache) -> Result<Option<PatientRecord>, DbError>,
    ) -> Result<PatientRecord, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<PatientRecord, AppError>>,
    {
        self.read_phi(
            request,
            move |cache, role| Ok(minimum::record(role, from_cache(cache)?)),
            |record, offline| Draft {
                action: AuditAction::View,
                resource_type: "Patient",
                resource_id: record.id.to_string(),
                patient_id: Some(record.id),
                fields: record
                    .fields
                    .present()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                offline,
                route: "patient_record",
                break_glass: None,
            },
            cache::put_patient_record,
        )
        .await
    }

    /// A day's schedule: `request` to the server, or `from_cache` offline.
    pub(super) async fn read_schedule<F, Fut>(
        &self,
        request: F,
        from_cache: impl FnOnce(&Cache) -> Result<Option<AppointmentList>, DbError>,
    ) -> Result<AppointmentList, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<AppointmentList, AppError>>,
    {
        self.read_phi(
            request,
            move |cache, role| Ok(minimum::schedule(role, from_cache(cache)?)),
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

    /// Patients matching `text` (words of a name, a date of birth, an MRN or phone): the
    /// clinic's, from the server, when online; offline, those in this user's encrypted
    /// cache. What is listed is audited first: one view event per patient shown (name, date
    /// of birth, MRN), committed together before the list is returned (fail closed).
    /// Not-a-search text is `bad_request` on `query`.
    pub async fn search_patients(&self, text: &str) -> Result<PatientSearchResults, AppError> {
        let query = PatientQuery::parse(text);
        let (token, generation) = self.session_snapshot()?;
        let q = text.trim().to_owned();
        let online = match self
            .fetch(token, |c, t| async move { c.search_patients(&t, &q).await })
            .await
        {
            Ok(page) => Some(page),
            Err(AppError::Unreachable) => None,
            Err(AppError::Server(api)) if api.code == ErrorCode::BadRequest => {
                return Err(AppError::BadInput("query"));
            }
            Err(e) => return Err(self.refused_in(generation, e).await),
        };
        let source = if online.is_some() {
            SearchSource::Clinic
        } else {
            SearchSource::ThisWorkstation
        };
        let query = match (&online, query) {
            (None, None) => return Err(AppError::BadInput("query")),
            (_, query) => query,
        };
        let now = self.clock.now_ms();
        let patients = self.with_unlocked(generation, |u, proof| {
            let hits = match (online, &query) {
                (Some(page), _) => page.results.into_iter().map(hit_of).collect(),
                (None, Some(query)) => minimum::hits(u.user.role, u.cache.search_patients(query)?),
                (None, None) => Vec::new(),
            };
            let offline = u.token.is_none() || source == SearchSource::ThisWorkstation;
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
        Ok(PatientSearchResults { patients, source })
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
            move |cache, role| Ok(minimum::chart(role, cache.cached_patient(patient_id)?)),
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
    /// in between. Online, the user's queued changes are sent first, so the server's
    /// answer includes them (a day read right after an offline session shows the bookings
    /// made in it, not the server's day before them).
    pub(super) async fn read_phi<T, F, Fut>(
        &self,
        request: F,
        from_cache: impl FnOnce(&Cache, Role) -> Result<Option<T>, DbError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), DbError>,
    ) -> Result<T, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        self.send_changes_first().await?;
        let (token, generation) = self.session_snapshot()?;
        let fetched = match self.fetch(token, request).await {
            // Unreachable: the cache answers (below). Any other refusal means what it means
            // for every request (a revoked device hands in its outbox and wipes itself).
            Err(e) if !matches!(e, AppError::Unreachable) => {
                return Err(self.refused_in(generation, e).await);
            }
            fetched => fetched,
        };
        self.record_view(generation, fetched, from_cache, draft, store)
    }

    /// Online, sends the user's queued changes before a read, so that the server's answer
    /// includes them; a change that cannot go now waits in the queue, and the read goes on.
    pub(super) async fn send_changes_first(&self) -> Result<(), AppError> {
        if self.session_snapshot()?.0.is_some()
            && let Err(e) = self.send_changes().await
        {
            tracing::debug!(code = %e.to_api().code, "queued changes not sent before a read");
        }
        Ok(())
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
        from_cache: impl FnOnce(&Cache, Role) -> Result<Option<T>, DbError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), DbError>,
    ) -> Result<T, AppError> {
        let (fetched, offline) = match fetched {
            Ok(value) => (Some(value), false),
            Err(AppError::Unreachable) => (None, true),
            Err(e) => return Err(e),
        };
        let now = self.clock.now_ms();
        let value = self.with_unlocked(generation, |u, proof| {
            let value = match fetched {
                Some(value) => value,
                // Offline: what the user's current role may read of the copy.
                None => from_cache(&u.cache, u.user.role)?.ok_or(AppError::Unreachable)?,
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

#[cfg(test)]
mod tests {
    //! The rule that a lock during a fetch discards what the fetch brings. The server's
    //! answer is the one part played here: each fetch is the test's own future, answered
    //! when the test says (a real server cannot be held mid-answer on cue). The keychain
    //! (the real Secret Service of the test session), the outbox and the cache (real
    //! SQLCipher files) and the session's transitions are the app's own.

    use std::sync::Arc;

    use clinicdesk_protocol::audit::AuditAction;
    use clinicdesk_protocol::phi::Phi;
    use clinicdesk_protocol::policy::Role;
    use clinicdesk_protocol::wire::{ClinicalAccess, Patient, UserInfo};
    use secrecy::SecretString;
    use tokio::sync::oneshot;
    use uuid::Uuid;
    use zeroize::Zeroizing;

    use super::super::sign_in::Opening;
    use crate::config::{Config, Paths};
    use crate::core::Core;
    use crate::error::AppError;
    use crate::local::cache::Cache;
    use crate::local::outbox::Outbox;
    use crate::net::enrollment::{Enrollment, save_enrollment};
    use crate::os::clock::{Clock, ManualClock};
    use crate::secrets::device_key::DeviceKey;
    use crate::secrets::keychain::{Keychain, random_key};
    use crate::secrets::keys::{DEVICE_SECRET, DeviceSecret};

    /// 2026-11-23 12:00 UTC.
    const START_MS: i64 = 1_795_435_200_000;

    /// A workstation enrolled as its files and keychain say, and one user's cache key.
    struct Workstation {
        _dir: tempfile::TempDir,
        core: Arc<Core>,
        paths: Paths,
        cache_path: std::path::PathBuf,
        cache_key: Zeroizing<[u8; 32]>,
        user: UserInfo,
    }

    impl Workstation {
        /// Writes what enrollment leaves behind (install id, device secret in the keychain,
        /// sealed device key, enrollment record, pinned CA), then starts the core on it.
        fn enrolled() -> Self {
            assert!(
                std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
                "no D-Bus session: run the tests with `cargo xtask test`"
            );
            let dir = tempfile::tempdir().unwrap();
            let paths = Paths::under(dir.path());
            let install_id = Uuid::new_v4();
            crate::files::write_json(
                &paths.install,
                &serde_json::json!({ "install_id": install_id }),
            )
            .unwrap();
            let service = format!("ClinicDesk-test-{}", Uuid::new_v4());
            let keychain = Keychain::new(&service, &install_id.to_string());
            let secret = DeviceSecret::create(&keychain).unwrap();
            DeviceKey::create(&paths, &secret).unwrap();
            let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            crate::files::write_atomic(&paths.pinned_ca, ca.cert.pem().as_bytes()).unwrap();
            // Nothing listens there: only the session's background logout tries it.
            let server_url = "https://127.0.0.1:9".to_owned();
            let clinic_id = Uuid::new_v4();
            save_enrollment(
                &paths,
                &Enrollment {
                    device_id: Uuid::new_v4(),
                    clinic_id,
                    clinic_name: "Synthetic clinic".into(),
                    server_url: server_url.clone(),
                    device_name: "Room 9".into(),
                    audit_public_key: String::new(),
                },
            )
            .unwrap();
            let config = Config {
                data_dir: dir.path().to_path_buf(),
                server_url,
                enrollment_ca: None,
                idle_override: None,
                keychain_service: service,
                upload_interval: std::time::Duration::from_secs(2),
            };
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START_MS));
            let core = Arc::new(Core::new(config, clock).unwrap());
            let cache_path = dir.path().join("users/synthetic/cache.sqlite3");
            std::fs::create_dir_all(cache_path.parent().unwrap()).unwrap();
            Self {
                _dir: dir,
                core,
                paths,
                cache_path,
                cache_key: random_key().unwrap(),
                user: UserInfo {
                    user_id: Uuid::new_v4(),
                    username: "frontdesk".into(),
                    display_name: "Synthetic Front Desk".into(),
                    role: Role::FrontDesk,
                    clinic_id,
                },
            }
        }

        fn cache(&self) -> Cache {
            Cache::open(&self.cache_path, &self.cache_key).unwrap()
        }

        /// Opens the user's session as a sign-in or unlock the server granted would.
        fn open(&self, opening: Opening) {
            let key = self.core.device.device_key().unwrap();
            self.core
                .open_unlocked(
                    key,
                    self.user.clone(),
                    Some(SecretString::from("synthetic-session-token")),
                    900,
                    self.cache(),
                    opening,
                    START_MS,
                )
                .unwrap();
        }

        /// The actions of the events waiting in the outbox, and the patients they name.
        fn recorded(&self) -> Vec<(AuditAction, Option<Uuid>)> {
            let key = DeviceSecret::load(self.core.keychain())
                .unwrap()
                .outbox_key()
                .unwrap();
            let outbox = Outbox::open(&self.paths.outbox, &key).unwrap();
            outbox
                .pending(100)
                .unwrap()
                .iter()
                .map(|e| (e.event.action, e.event.patient_id))
                .collect()
        }
    }

    impl Drop for Workstation {
        fn drop(&mut self) {
            let _ = self.core.keychain().delete(DEVICE_SECRET);
        }
    }

    fn synthetic_patient(n: u128) -> Patient {
        Patient {
            id: Uuid::from_u128(n),
            name: Phi::new(format!("Canary Synthetic-{n}")),
            birth_date: Phi::new("1970-01-01".into()),
            mrn: Phi::new(format!("SYN-{n:04}")),
            phone: Phi::new("555-0100".into()),
            clinical: None,
            clinical_access: ClinicalAccess::NotPermitted,
            break_glass: None,
        }
    }

    /// Starts opening `patient`'s chart; the server's answer waits until the returned
    /// sender is used. Resolves once the request is out, with no lock of the core held.
    async fn fetch_in_flight(
        core: &Arc<Core>,
        patient: &Patient,
    ) -> (
        oneshot::Sender<Patient>,
        tokio::task::JoinHandle<Result<Patient, AppError>>,
    ) {
        let (sent, out) = oneshot::channel();
        let (answer, answered) = oneshot::channel::<Patient>();
        let reading = tokio::spawn({
            let core = core.clone();
            let id = patient.id;
            async move {
                core.read_patient(id, |_client, _token| async move {
                    let _ = sent.send(());
                    answered.await.map_err(|_| AppError::Unreachable)
                })
                .await
            }
        });
        out.await.unwrap();
        (answer, reading)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_fetch_that_completes_after_a_lock_returns_nothing_and_caches_nothing() {
        let ws = Workstation::enrolled();
        ws.open(Opening::SignIn);

        // Undisturbed, a fetched chart is returned, audited and cached.
        let first = synthetic_patient(1);
        let (answer, reading) = fetch_in_flight(&ws.core, &first).await;
        answer.send(first.clone()).unwrap();
        assert_eq!(reading.await.unwrap().unwrap(), first);
        assert_eq!(
            ws.cache().cached_patient(first.id).unwrap(),
            Some(first.clone())
        );

        // The user locks while the next chart is on its way, and unlocks again before it
        // arrives: the answer belongs to the session that was locked, so it is dropped.
        let second = synthetic_patient(2);
        let (answer, reading) = fetch_in_flight(&ws.core, &second).await;
        ws.core.lock();
        ws.open(Opening::Unlock);
        answer.send(second.clone()).unwrap();
        let late = reading.await.unwrap();
        assert!(
            matches!(late, Err(AppError::Locked)),
            "a chart fetched before the lock came back after it"
        );
        assert_eq!(ws.cache().cached_patient(second.id).unwrap(), None);
        assert_eq!(
            ws.recorded(),
            vec![
                (AuditAction::Login, None),
                (AuditAction::View, Some(first.id)),
                (AuditAction::Lock, None),
                (AuditAction::Unlock, None),
            ],
            "only the first chart's view is recorded"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_late_refusal_of_an_ended_session_does_not_lock_the_next_one() {
        // A background pass (the change sender, the offline copy's refresh) still running
        // when the user locked and unlocked again gets "session expired" for the old
        // token: that must not lock the new session (nor drop a sign-in waiting for its
        // second factor). The same refusal for the current session locks it.
        let ws = Workstation::enrolled();
        ws.open(Opening::SignIn);
        let (_, first) = ws.core.session_snapshot().unwrap();
        ws.core.lock();
        ws.open(Opening::Unlock);
        let expired = || {
            AppError::Server(clinicdesk_protocol::ApiError::new(
                clinicdesk_protocol::ErrorCode::SessionExpired,
            ))
        };
        let late = ws.core.refused_in(first, expired()).await;
        assert!(matches!(late, AppError::Locked));
        assert_eq!(
            ws.core.status().phase,
            clinicdesk_protocol::app::Phase::Unlocked,
            "the old session's refusal locked the new one"
        );
        let (_, second) = ws.core.session_snapshot().unwrap();
        let now = ws.core.refused_in(second, expired()).await;
        assert!(matches!(now, AppError::Locked));
        assert_eq!(
            ws.core.status().phase,
            clinicdesk_protocol::app::Phase::Locked
        );
    }
}
