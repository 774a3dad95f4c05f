//! The Tauri shell: each command parses its arguments, calls the core in one line and maps
//! the error to a code. No logic lives here.

use std::sync::Arc;

use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::{
    AppStatus, ChangeSummary, FieldConflict, PatientSearchResults, SecondFactorSetUp, UnsentChanges,
};
use clinicdesk_protocol::mfa::TotpSetup;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    AppointmentList, AuditAlerts, BreakGlassQueue, BreakGlassReason, CareTeam, CoverageFields,
    CoverageList, DayPatients, DeviceList, EnrollmentCodeIssued, FreeSlots, ImportJob, NewUser,
    Patient, PatientFields, PatientHistory, PatientRecord, PractitionerDirectory, PractitionerList,
    RecordWritten, UserList, UserSummary,
};
use tauri::{Emitter, Manager, State};
use uuid::Uuid;

use crate::config::Config;
use crate::core::{AppointmentAction, Booking, Core, uploader};
use crate::error::AppError;
use crate::net::client::CodeMethod;
use crate::os::{idle, lock_signals};

/// The event the UI hears when the core locks on its own (idle, server order).
pub const LOCKED_EVENT: &str = "clinicdesk://locked";

pub struct AppCore(pub Arc<Core>);

type CommandResult<T> = Result<T, ApiError>;

fn api(e: AppError) -> ApiError {
    e.to_api()
}

#[tauri::command(rename_all = "snake_case")]
async fn status(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    Ok(core.0.status())
}

#[tauri::command(rename_all = "snake_case")]
async fn enroll(
    core: State<'_, AppCore>,
    enrollment_code: String,
    device_name: String,
) -> CommandResult<AppStatus> {
    core.0
        .enroll(&enrollment_code, &device_name)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn sign_in(
    core: State<'_, AppCore>,
    username: String,
    password: String,
) -> CommandResult<AppStatus> {
    core.0.sign_in(&username, &password).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn recover_device_secret(
    core: State<'_, AppCore>,
    username: String,
    password: String,
) -> CommandResult<AppStatus> {
    core.0
        .recover_device_secret(&username, &password)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn submit_second_factor(
    core: State<'_, AppCore>,
    method: CodeMethod,
    code: String,
) -> CommandResult<AppStatus> {
    core.0
        .submit_second_factor(method, &code)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn start_totp_setup(core: State<'_, AppCore>) -> CommandResult<TotpSetup> {
    core.0.start_totp_setup().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn confirm_totp_setup(
    core: State<'_, AppCore>,
    code: String,
) -> CommandResult<SecondFactorSetUp> {
    core.0.confirm_totp_setup(&code).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn verify_with_security_key(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    core.0.verify_with_security_key().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn set_up_security_key(core: State<'_, AppCore>) -> CommandResult<SecondFactorSetUp> {
    core.0.set_up_security_key().await.map_err(api)
}

/// The PIN the user typed for their security key, for the ceremony waiting on it.
#[tauri::command(rename_all = "snake_case")]
fn security_key_pin(core: State<'_, AppCore>, pin: String) -> CommandResult<()> {
    core.0
        .answer_security_key_pin(zeroize::Zeroizing::new(pin))
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
fn cancel_security_key(core: State<'_, AppCore>) -> CommandResult<()> {
    core.0.cancel_security_key();
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
async fn cancel_sign_in(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    Ok(core.0.cancel_sign_in())
}

#[tauri::command(rename_all = "snake_case")]
async fn unlock(core: State<'_, AppCore>, password: String) -> CommandResult<AppStatus> {
    core.0.unlock(&password).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn lock(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    Ok(core.0.lock())
}

#[tauri::command(rename_all = "snake_case")]
async fn switch_user(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    Ok(core.0.switch_user())
}

#[tauri::command(rename_all = "snake_case")]
async fn sign_out(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    core.0.sign_out().map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn retry_keychain(core: State<'_, AppCore>) -> CommandResult<AppStatus> {
    Ok(core.0.retry_keychain())
}

#[tauri::command(rename_all = "snake_case")]
async fn activity(core: State<'_, AppCore>) -> CommandResult<()> {
    core.0.activity();
    Ok(())
}

#[tauri::command(rename_all = "snake_case")]
async fn appointments(core: State<'_, AppCore>) -> CommandResult<AppointmentList> {
    core.0.appointments().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn schedule(
    core: State<'_, AppCore>,
    date: Option<String>,
) -> CommandResult<AppointmentList> {
    core.0.schedule(date).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn patient_record(
    core: State<'_, AppCore>,
    patient_id: String,
) -> CommandResult<PatientRecord> {
    let id = uuid_arg(&patient_id, "patient_id")?;
    core.0.patient_record(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn coverages(core: State<'_, AppCore>, patient_id: String) -> CommandResult<CoverageList> {
    let id = uuid_arg(&patient_id, "patient_id")?;
    core.0.coverages(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn day_patients(
    core: State<'_, AppCore>,
    date: Option<String>,
) -> CommandResult<DayPatients> {
    core.0.day_patients(date).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn patient_history(
    core: State<'_, AppCore>,
    patient_id: String,
) -> CommandResult<PatientHistory> {
    let id = uuid_arg(&patient_id, "patient_id")?;
    core.0.patient_history(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn add_coverage(
    core: State<'_, AppCore>,
    patient_id: String,
    fields: CoverageFields,
) -> CommandResult<ChangeSummary> {
    let id = uuid_arg(&patient_id, "patient_id")?;
    core.0.add_coverage(id, fields).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn update_coverage(
    core: State<'_, AppCore>,
    coverage_id: String,
    patient_id: String,
    based_on: u64,
    fields: CoverageFields,
    reason: Phi<String>,
) -> CommandResult<ChangeSummary> {
    let coverage = uuid_arg(&coverage_id, "coverage_id")?;
    let patient = uuid_arg(&patient_id, "patient_id")?;
    core.0
        .update_coverage(coverage, patient, based_on, fields, reason)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn practitioners(core: State<'_, AppCore>) -> CommandResult<PractitionerList> {
    core.0.practitioners().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn free_slots(
    core: State<'_, AppCore>,
    practitioner_id: String,
    date: String,
    duration_mins: u32,
) -> CommandResult<FreeSlots> {
    let id = uuid_arg(&practitioner_id, "practitioner_id")?;
    core.0
        .free_slots(id, date, duration_mins)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn register_patient(
    core: State<'_, AppCore>,
    fields: PatientFields,
) -> CommandResult<ChangeSummary> {
    core.0.register_patient(fields).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn update_patient(
    core: State<'_, AppCore>,
    patient_id: String,
    based_on: u64,
    fields: PatientFields,
    reason: Phi<String>,
) -> CommandResult<ChangeSummary> {
    let id = uuid_arg(&patient_id, "patient_id")?;
    core.0
        .update_patient(id, based_on, fields, reason)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn book(core: State<'_, AppCore>, booking: Booking) -> CommandResult<ChangeSummary> {
    core.0.book(booking).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn change_appointment(
    core: State<'_, AppCore>,
    appointment_id: String,
    based_on: u64,
    action: AppointmentAction,
) -> CommandResult<ChangeSummary> {
    let id = uuid_arg(&appointment_id, "appointment_id")?;
    core.0
        .change_appointment(id, based_on, action)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn unsent_changes(core: State<'_, AppCore>) -> CommandResult<UnsentChanges> {
    core.0.unsent_changes().map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn confirm_new_person(
    core: State<'_, AppCore>,
    change_id: String,
) -> CommandResult<ChangeSummary> {
    let id = uuid_arg(&change_id, "change_id")?;
    core.0.confirm_new_person(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn discard_change(
    core: State<'_, AppCore>,
    change_id: String,
) -> CommandResult<UnsentChanges> {
    let id = uuid_arg(&change_id, "change_id")?;
    core.0.discard_change(id).map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn conflict_detail(
    core: State<'_, AppCore>,
    change_id: String,
) -> CommandResult<Vec<FieldConflict>> {
    let id = uuid_arg(&change_id, "change_id")?;
    core.0.conflict_detail(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn resolve_conflict(
    core: State<'_, AppCore>,
    change_id: String,
    keep_mine: Vec<String>,
) -> CommandResult<ChangeSummary> {
    let id = uuid_arg(&change_id, "change_id")?;
    core.0.resolve_conflict(id, keep_mine).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn search_patients(
    core: State<'_, AppCore>,
    query: String,
) -> CommandResult<PatientSearchResults> {
    core.0.search_patients(&query).await.map_err(api)
}

fn uuid_arg(text: &str, field: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| api(AppError::BadInput(field)))
}

#[tauri::command(rename_all = "snake_case")]
async fn open_patient(core: State<'_, AppCore>, patient_id: String) -> CommandResult<Patient> {
    let id = Uuid::parse_str(&patient_id).map_err(|_| api(AppError::BadInput("patient_id")))?;
    core.0.open_patient(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn change_password(
    core: State<'_, AppCore>,
    current_password: String,
    new_password: String,
) -> CommandResult<AppStatus> {
    core.0
        .change_password(&current_password, &new_password)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn choose_new_password(
    core: State<'_, AppCore>,
    new_password: String,
) -> CommandResult<AppStatus> {
    core.0.choose_new_password(&new_password).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn break_glass(
    core: State<'_, AppCore>,
    patient_id: String,
    reason_code: String,
    reason_text: String,
) -> CommandResult<Patient> {
    let id = Uuid::parse_str(&patient_id).map_err(|_| api(AppError::BadInput("patient_id")))?;
    let reason =
        BreakGlassReason::parse(&reason_code).ok_or(api(AppError::BadInput("reason_code")))?;
    core.0
        .break_glass(id, reason, reason_text)
        .await
        .map_err(api)
}

fn parse_id(value: &str, field: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| api(AppError::BadInput(field)))
}

fn care_team_ids(patient_id: &str, clinician_id: &str) -> Result<(Uuid, Uuid), ApiError> {
    Ok((
        parse_id(patient_id, "patient_id")?,
        parse_id(clinician_id, "clinician_id")?,
    ))
}

#[tauri::command(rename_all = "snake_case")]
async fn care_team(core: State<'_, AppCore>, patient_id: String) -> CommandResult<CareTeam> {
    let patient = parse_id(&patient_id, "patient_id")?;
    core.0.care_team(patient).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn add_to_care_team(
    core: State<'_, AppCore>,
    patient_id: String,
    clinician_id: String,
) -> CommandResult<CareTeam> {
    let (patient, clinician) = care_team_ids(&patient_id, &clinician_id)?;
    core.0
        .add_to_care_team(patient, clinician)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn remove_from_care_team(
    core: State<'_, AppCore>,
    patient_id: String,
    clinician_id: String,
) -> CommandResult<CareTeam> {
    let (patient, clinician) = care_team_ids(&patient_id, &clinician_id)?;
    core.0
        .remove_from_care_team(patient, clinician)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn break_glass_queue(
    core: State<'_, AppCore>,
    pending: bool,
) -> CommandResult<BreakGlassQueue> {
    core.0.break_glass_queue(pending).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn review_break_glass(
    core: State<'_, AppCore>,
    grant_id: String,
    note: String,
) -> CommandResult<()> {
    let id = Uuid::parse_str(&grant_id).map_err(|_| api(AppError::BadInput("grant_id")))?;
    core.0.review_break_glass(id, note).await.map_err(api)
}

/// Saves the access review in the user's Downloads folder (Documents, or the app's data
/// folder, if there is none) and answers the file's path.
#[tauri::command(rename_all = "snake_case")]
async fn export_access_review(
    app: tauri::AppHandle,
    core: State<'_, AppCore>,
) -> CommandResult<String> {
    let paths = app.path();
    let dir = paths
        .download_dir()
        .or_else(|_| paths.document_dir())
        .or_else(|_| paths.app_data_dir())
        .map_err(|_| api(AppError::Internal("no folder to save in")))?;
    let saved = core.0.export_access_review(&dir).await.map_err(api)?;
    Ok(saved.display().to_string())
}

#[tauri::command(rename_all = "snake_case")]
async fn devices(core: State<'_, AppCore>) -> CommandResult<DeviceList> {
    core.0.devices().await.map_err(api)
}

/// One part of the clinic's FHIR export (the UI splits a bigger file on line boundaries).
#[tauri::command(rename_all = "snake_case")]
async fn start_import(core: State<'_, AppCore>, ndjson: String) -> CommandResult<ImportJob> {
    core.0.start_import(ndjson).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn import_job(core: State<'_, AppCore>, import_id: String) -> CommandResult<ImportJob> {
    let id = uuid_arg(&import_id, "import_id")?;
    core.0.import_job(id).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn practitioner_directory(core: State<'_, AppCore>) -> CommandResult<PractitionerDirectory> {
    core.0.practitioner_directory().await.map_err(api)
}

/// `user_id` empty unlinks the entry.
#[tauri::command(rename_all = "snake_case")]
async fn link_practitioner(
    core: State<'_, AppCore>,
    entry_id: String,
    version: u64,
    user_id: String,
) -> CommandResult<RecordWritten> {
    let entry = uuid_arg(&entry_id, "entry_id")?;
    let user = if user_id.is_empty() {
        None
    } else {
        Some(self::user_id(&user_id)?)
    };
    core.0
        .link_practitioner(entry, version, user)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn audit_alerts(core: State<'_, AppCore>) -> CommandResult<AuditAlerts> {
    core.0.audit_alerts().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn issue_enrollment_code(core: State<'_, AppCore>) -> CommandResult<EnrollmentCodeIssued> {
    core.0.issue_enrollment_code().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn revoke_device(core: State<'_, AppCore>, device_id: String) -> CommandResult<()> {
    let id = Uuid::parse_str(&device_id).map_err(|_| api(AppError::BadInput("device_id")))?;
    core.0.revoke_device(id).await.map_err(api)
}

fn user_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| api(AppError::BadInput("user_id")))
}

#[tauri::command(rename_all = "snake_case")]
async fn users(core: State<'_, AppCore>) -> CommandResult<UserList> {
    core.0.clinic_users().await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn create_user(core: State<'_, AppCore>, user: NewUser) -> CommandResult<UserSummary> {
    core.0.create_user(user).await.map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn change_role(core: State<'_, AppCore>, user_id: String, role: Role) -> CommandResult<()> {
    core.0
        .change_role(self::user_id(&user_id)?, role)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn deactivate_user(core: State<'_, AppCore>, user_id: String) -> CommandResult<()> {
    core.0
        .deactivate_user(self::user_id(&user_id)?)
        .await
        .map_err(api)
}

#[tauri::command(rename_all = "snake_case")]
async fn reset_second_factor(core: State<'_, AppCore>, user_id: String) -> CommandResult<()> {
    core.0
        .reset_second_factor(self::user_id(&user_id)?)
        .await
        .map_err(api)
}

/// USB security keys, or the software authenticator of demo and test builds when asked for
/// (release builds have none compiled in).
fn plug_in_security_key(core: &Core) {
    #[cfg(feature = "soft-authenticator")]
    if let Some(key) = soft_security_key() {
        tracing::warn!("software security key in use: for demos and tests only");
        core.set_security_key(key);
        return;
    }
    #[cfg(feature = "usb-security-key")]
    core.set_security_key(Arc::new(
        crate::os::security_key::ctap::CtapSecurityKey::new(crate::os::security_key::ctap::UsbKeys),
    ));
    #[cfg(not(any(feature = "soft-authenticator", feature = "usb-security-key")))]
    let _ = core;
}

/// The software key `CLINICDESK_SOFT_SECURITY_KEY` asks for: `1` a passkey that never
/// prompts, `pin` a CTAP2 key plugged in with the PIN in `CLINICDESK_SOFT_SECURITY_KEY_PIN`,
/// touching itself a moment after it starts blinking.
#[cfg(feature = "soft-authenticator")]
fn soft_security_key() -> Option<Arc<dyn crate::os::security_key::SecurityKey>> {
    use crate::os::security_key::{SoftCtapKey, SoftSecurityKey, ctap::CtapSecurityKey};
    match std::env::var("CLINICDESK_SOFT_SECURITY_KEY").ok()?.as_str() {
        "1" => Some(Arc::new(SoftSecurityKey::new())),
        "pin" => {
            let Ok(pin) = std::env::var("CLINICDESK_SOFT_SECURITY_KEY_PIN") else {
                tracing::warn!("CLINICDESK_SOFT_SECURITY_KEY=pin without its PIN: no software key");
                return None;
            };
            let key =
                SoftCtapKey::touching_itself(&pin, std::time::Duration::from_millis(1500)).ok()?;
            key.plug_in().ok()?;
            Some(Arc::new(CtapSecurityKey::new(key)))
        }
        _ => None,
    }
}

/// Builds and runs the desktop app until its window closes.
pub fn run() -> Result<(), tauri::Error> {
    tauri::Builder::default()
        .setup(|app| {
            let config = Config::from_env(app.path().app_data_dir()?);
            let upload_interval = config.upload_interval;
            let core = Arc::new(Core::new(config, crate::os::clock::system())?);
            plug_in_security_key(&core);
            let handle = app.handle().clone();
            core.set_lock_listener(move || {
                let _ = handle.emit(LOCKED_EVENT, ());
            });
            tauri::async_runtime::spawn(idle::run_idle_watch(core.clone()));
            tauri::async_runtime::spawn(uploader::run_uploader(core.clone(), upload_interval));
            tauri::async_runtime::spawn(uploader::run_change_sender(
                core.clone(),
                std::time::Duration::from_secs(5),
            ));
            let watched = core.clone();
            tauri::async_runtime::spawn(async move {
                match lock_signals::watch(watched, lock_signals::Buses::connect().await).await {
                    Ok(watch) => watch.await,
                    Err(_) => tracing::warn!("OS lock signals unavailable"),
                }
            });
            app.manage(AppCore(core));
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            status,
            enroll,
            sign_in,
            recover_device_secret,
            submit_second_factor,
            choose_new_password,
            change_password,
            start_totp_setup,
            confirm_totp_setup,
            verify_with_security_key,
            set_up_security_key,
            security_key_pin,
            cancel_security_key,
            cancel_sign_in,
            unlock,
            lock,
            switch_user,
            sign_out,
            retry_keychain,
            activity,
            appointments,
            schedule,
            practitioners,
            coverages,
            day_patients,
            patient_history,
            add_coverage,
            update_coverage,
            patient_record,
            free_slots,
            register_patient,
            update_patient,
            book,
            change_appointment,
            unsent_changes,
            confirm_new_person,
            discard_change,
            conflict_detail,
            resolve_conflict,
            open_patient,
            search_patients,
            break_glass,
            care_team,
            add_to_care_team,
            remove_from_care_team,
            break_glass_queue,
            review_break_glass,
            export_access_review,
            devices,
            start_import,
            import_job,
            practitioner_directory,
            link_practitioner,
            audit_alerts,
            issue_enrollment_code,
            revoke_device,
            users,
            create_user,
            change_role,
            deactivate_user,
            reset_second_factor
        ])
        .run(tauri::generate_context!())
}
