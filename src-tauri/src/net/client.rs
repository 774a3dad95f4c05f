//! The HTTPS client for the ClinicDesk server. It trusts exactly one CA, the one pinned
//! at enrollment (no system roots), speaks TLS 1.2 or newer, and refuses plain HTTP.

use std::time::Duration;

use clinicdesk_protocol::mfa::{
    FirstPassword, LoginStep, MfaCode, MfaEnrolled, MfaTicketRequest, TotpSetup, WebauthnChallenge,
    WebauthnResponse,
};
use clinicdesk_protocol::wire::{
    AppointmentList, AppointmentRecord, AuditAlerts, AuditReceipt, AuditUpload, BreakGlassGrant,
    BreakGlassQueue, BreakGlassRequest, CareTeam, CareTeamAddition, ChallengeRequest,
    ChallengeResponse, CoverageList, DayPatients, DeviceList, DirectoryLink, EnrollRequest,
    EnrollResponse, EnrollmentCodeIssued, EscrowRelease, EscrowedSecret, FreeSlots, ImportJob,
    LoginRequest, LoginResponse, NewUser, OfflineCopyReport, PasswordChange, Patient,
    PatientHistory, PatientRecord, PatientSearchPage, PractitionerDirectory, PractitionerList,
    RecordWritten, ReviewRequest, RoleChange, SyncPage, UserList, UserSummary,
};
use clinicdesk_protocol::{ApiError, ErrorCode};
use reqwest::{Certificate, Method, RequestBuilder, tls};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::AppError;

/// The second factors a user types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeMethod {
    Totp,
    RecoveryCode,
}

/// What an admin changes about another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Role(clinicdesk_protocol::policy::Role),
    Deactivate,
    ResetMfa,
}

#[derive(Debug, Clone)]
pub struct ServerClient {
    base: String,
    http: reqwest::Client,
}

impl ServerClient {
    pub fn new(base_url: &str, pinned_ca_pem: &[u8]) -> Result<Self, AppError> {
        let ca = Certificate::from_pem(pinned_ca_pem).map_err(|_| AppError::Config("server_ca"))?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .min_tls_version(tls::Version::TLS_1_2)
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("ClinicDesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| AppError::Config("http client"))?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn request(&self, method: Method, path: &str, token: Option<&SecretString>) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => rb.bearer_auth(t.expose_secret()),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T, AppError> {
        Self::succeeded(rb)
            .await?
            .json::<T>()
            .await
            .map_err(|_| AppError::Internal("response body"))
    }

    /// The response if it is a success, else the server's error.
    async fn succeeded(rb: RequestBuilder) -> Result<reqwest::Response, AppError> {
        let response = rb.send().await.map_err(transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let error = response
            .json::<ApiError>()
            .await
            .unwrap_or_else(|_| ApiError::new(ErrorCode::Internal));
        Err(AppError::Server(error))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&SecretString>,
        body: &B,
    ) -> Result<T, AppError> {
        Self::send(self.request(Method::POST, path, token).json(body)).await
    }

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, AppError> {
        self.post("/v1/devices/enroll", None, req).await
    }

    pub async fn challenge(&self, device_id: Uuid) -> Result<ChallengeResponse, AppError> {
        self.post("/v1/auth/challenge", None, &ChallengeRequest { device_id })
            .await
    }

    pub async fn login(&self, req: &LoginRequest) -> Result<LoginStep, AppError> {
        self.post("/v1/auth/login", None, req).await
    }

    /// Redeems a login ticket with a TOTP code or a recovery code.
    pub async fn second_factor(
        &self,
        method: CodeMethod,
        req: &MfaCode,
    ) -> Result<LoginResponse, AppError> {
        let path = match method {
            CodeMethod::Totp => "/v1/auth/mfa/totp",
            CodeMethod::RecoveryCode => "/v1/auth/mfa/recovery",
        };
        self.post(path, None, req).await
    }

    /// Replaces a first password with the user's own; answers the second-factor step.
    pub async fn first_password(&self, req: &FirstPassword) -> Result<LoginStep, AppError> {
        self.post("/v1/auth/password/first", None, req).await
    }

    /// Options for the user's security key to sign (`/setup/...` to register a new one).
    pub async fn webauthn_challenge(
        &self,
        setup: bool,
        req: &MfaTicketRequest,
    ) -> Result<WebauthnChallenge, AppError> {
        let path = if setup {
            "/v1/auth/mfa/setup/webauthn/challenge"
        } else {
            "/v1/auth/mfa/webauthn/challenge"
        };
        self.post(path, None, req).await
    }

    /// Redeems a login ticket with the security key's assertion.
    pub async fn verify_webauthn(&self, req: &WebauthnResponse) -> Result<LoginResponse, AppError> {
        self.post("/v1/auth/mfa/webauthn", None, req).await
    }

    /// Registers a first security key; the session and recovery codes come back.
    pub async fn setup_webauthn(&self, req: &WebauthnResponse) -> Result<MfaEnrolled, AppError> {
        self.post("/v1/auth/mfa/setup/webauthn", None, req).await
    }

    pub async fn start_totp_setup(&self, req: &MfaTicketRequest) -> Result<TotpSetup, AppError> {
        self.post("/v1/auth/mfa/setup/totp", None, req).await
    }

    pub async fn confirm_totp_setup(&self, req: &MfaCode) -> Result<MfaEnrolled, AppError> {
        self.post("/v1/auth/mfa/setup/totp/confirm", None, req)
            .await
    }

    pub async fn logout(&self, token: &SecretString) -> Result<(), AppError> {
        let response = self
            .request(Method::POST, "/v1/auth/logout", Some(token))
            .send()
            .await
            .map_err(transport)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(AppError::Server(ApiError::new(ErrorCode::SessionExpired)))
        }
    }

    /// The schedule of `date` (`YYYY-MM-DD`, the clinic's); today there when `None`.
    pub async fn appointments(
        &self,
        token: &SecretString,
        date: Option<&str>,
    ) -> Result<AppointmentList, AppError> {
        let mut rb = self.request(Method::GET, "/v1/appointments", Some(token));
        if let Some(date) = date {
            rb = rb.query(&[("date", date)]);
        }
        Self::send(rb).await
    }

    /// Who can be booked: the clinic's active clinicians.
    pub async fn practitioners(&self, token: &SecretString) -> Result<PractitionerList, AppError> {
        Self::send(self.request(Method::GET, "/v1/practitioners", Some(token))).await
    }

    /// Where an appointment of `duration_mins` fits on `date` with the practitioner.
    pub async fn free_slots(
        &self,
        token: &SecretString,
        practitioner_id: Uuid,
        date: &str,
        duration_mins: u32,
    ) -> Result<FreeSlots, AppError> {
        let path = format!("/v1/practitioners/{practitioner_id}/free-slots");
        let rb = self.request(Method::GET, &path, Some(token)).query(&[
            ("date", date),
            ("duration_mins", &duration_mins.to_string()),
        ]);
        Self::send(rb).await
    }

    /// The clinic's patients matching what the user typed (the server records the
    /// disclosure of each match).
    pub async fn search_patients(
        &self,
        token: &SecretString,
        q: &str,
    ) -> Result<PatientSearchPage, AppError> {
        let rb = self
            .request(Method::GET, "/v1/patients", Some(token))
            .query(&[("q", q)]);
        Self::send(rb).await
    }

    /// A patient's registration record as the user's role may read it.
    pub async fn patient_record(
        &self,
        token: &SecretString,
        id: Uuid,
    ) -> Result<PatientRecord, AppError> {
        let path = format!("/v1/patients/{id}/record");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    /// A patient's coverages, active or not.
    pub async fn coverages(
        &self,
        token: &SecretString,
        patient_id: Uuid,
    ) -> Result<CoverageList, AppError> {
        let path = format!("/v1/patients/{patient_id}/coverages");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    /// The patients booked on `date` (the clinic's day; today there when `None`) with their
    /// coverages, as the user's role may read them: billing's list.
    pub async fn day_patients(
        &self,
        token: &SecretString,
        date: Option<&str>,
    ) -> Result<DayPatients, AppError> {
        let path = match date {
            Some(d) => format!("/v1/day/patients?date={d}"),
            None => "/v1/day/patients".to_owned(),
        };
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    /// Starts importing `ndjson` (lines of a FHIR R4 export, at most the server's body
    /// limit): the job as it starts.
    pub async fn start_import(
        &self,
        token: &SecretString,
        ndjson: String,
    ) -> Result<ImportJob, AppError> {
        let rb = self
            .request(Method::POST, "/v1/imports", Some(token))
            .header(reqwest::header::CONTENT_TYPE, "application/fhir+ndjson")
            .body(ndjson);
        Self::send(rb).await
    }

    /// An import job as it goes.
    pub async fn import_job(&self, token: &SecretString, id: Uuid) -> Result<ImportJob, AppError> {
        Self::send(self.request(Method::GET, &format!("/v1/imports/{id}"), Some(token))).await
    }

    /// The old system's practitioners the imports found, and the accounts they stand for.
    pub async fn practitioner_directory(
        &self,
        token: &SecretString,
    ) -> Result<PractitionerDirectory, AppError> {
        Self::send(self.request(Method::GET, "/v1/practitioner-directory", Some(token))).await
    }

    /// Links the directory entry (still at `based_on`) to a clinician's account, or unlinks
    /// it.
    pub async fn link_practitioner(
        &self,
        token: &SecretString,
        entry: Uuid,
        based_on: u64,
        link: &DirectoryLink,
    ) -> Result<RecordWritten, AppError> {
        let path = format!("/v1/practitioner-directory/{entry}");
        let rb = self
            .request(Method::PUT, &path, Some(token))
            .header(reqwest::header::IF_MATCH, format!("\"{based_on}\""))
            .json(link);
        Self::send(rb).await
    }

    /// One page of the patients booked from `from` to `to` (the clinic's days), after the
    /// cursor `after`, each with chart, record and coverages as the user may read them.
    pub async fn sync_patients(
        &self,
        token: &SecretString,
        from: &str,
        to: &str,
        after: Option<Uuid>,
    ) -> Result<SyncPage, AppError> {
        let mut rb = self
            .request(Method::GET, "/v1/sync/patients", Some(token))
            .query(&[("from", from), ("to", to)]);
        if let Some(after) = after {
            rb = rb.query(&[("after", after.to_string())]);
        }
        Self::send(rb).await
    }

    /// Every version of a patient's registration record, each cut to the user's role.
    pub async fn patient_history(
        &self,
        token: &SecretString,
        patient_id: Uuid,
    ) -> Result<PatientHistory, AppError> {
        let path = format!("/v1/patients/{patient_id}/history");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    /// An appointment's record as the user's role may read it.
    pub async fn appointment_record(
        &self,
        token: &SecretString,
        id: Uuid,
    ) -> Result<AppointmentRecord, AppError> {
        let path = format!("/v1/appointments/{id}");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    /// A record write (`POST` to create, `PATCH` with `If-Match: based_on` to change), named
    /// by `change_id` so that sending it again finds what the first send stored.
    pub async fn write_record<B: Serialize>(
        &self,
        token: &SecretString,
        path: &str,
        change_id: Uuid,
        based_on: Option<u64>,
        body: &B,
    ) -> Result<RecordWritten, AppError> {
        let method = if based_on.is_some() {
            Method::PATCH
        } else {
            Method::POST
        };
        let mut rb = self
            .request(method, path, Some(token))
            .header("Idempotency-Key", change_id.to_string())
            .json(body);
        if let Some(version) = based_on {
            rb = rb.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        Self::send(rb).await
    }

    pub async fn patient(&self, token: &SecretString, id: Uuid) -> Result<Patient, AppError> {
        Self::send(self.request(Method::GET, &format!("/v1/patients/{id}"), Some(token))).await
    }

    /// Opens an hour's access to a chart outside the clinician's care team.
    pub async fn break_glass(
        &self,
        token: &SecretString,
        patient_id: Uuid,
        req: &BreakGlassRequest,
    ) -> Result<BreakGlassGrant, AppError> {
        self.post(
            &format!("/v1/patients/{patient_id}/break-glass"),
            Some(token),
            req,
        )
        .await
    }

    /// A patient's care team and the clinicians who could join it (front desk).
    pub async fn care_team(
        &self,
        token: &SecretString,
        patient_id: Uuid,
    ) -> Result<CareTeam, AppError> {
        let path = format!("/v1/patients/{patient_id}/care-team");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    pub async fn add_to_care_team(
        &self,
        token: &SecretString,
        patient_id: Uuid,
        req: &CareTeamAddition,
    ) -> Result<(), AppError> {
        let path = format!("/v1/patients/{patient_id}/care-team");
        Self::succeeded(self.request(Method::POST, &path, Some(token)).json(req))
            .await
            .map(drop)
    }

    pub async fn remove_from_care_team(
        &self,
        token: &SecretString,
        patient_id: Uuid,
        clinician_id: Uuid,
    ) -> Result<(), AppError> {
        let path = format!("/v1/patients/{patient_id}/care-team/{clinician_id}/remove");
        Self::succeeded(self.request(Method::POST, &path, Some(token)))
            .await
            .map(drop)
    }

    /// The clinic's break-glass grants (admins); `pending`: only those not yet reviewed.
    pub async fn break_glass_queue(
        &self,
        token: &SecretString,
        pending: bool,
    ) -> Result<BreakGlassQueue, AppError> {
        let path = format!("/v1/break-glass?pending={pending}");
        Self::send(self.request(Method::GET, &path, Some(token))).await
    }

    pub async fn review_break_glass(
        &self,
        token: &SecretString,
        grant_id: Uuid,
        req: &ReviewRequest,
    ) -> Result<(), AppError> {
        let path = format!("/v1/break-glass/{grant_id}/review");
        Self::succeeded(self.request(Method::POST, &path, Some(token)).json(req))
            .await
            .map(drop)
    }

    /// The clinic's access review as CSV (admins).
    pub async fn access_review_csv(&self, token: &SecretString) -> Result<Vec<u8>, AppError> {
        let response =
            Self::succeeded(self.request(Method::GET, "/v1/audit/access-review", Some(token)))
                .await?;
        let body = response
            .bytes()
            .await
            .map_err(|_| AppError::Internal("response body"))?;
        Ok(body.to_vec())
    }

    /// The clinic's workstations (admins).
    /// The signed-in user's own password change; the server ends all their sessions.
    pub async fn change_password(
        &self,
        token: &SecretString,
        req: &PasswordChange,
    ) -> Result<(), AppError> {
        Self::succeeded(
            self.request(Method::POST, "/v1/auth/password", Some(token))
                .json(req),
        )
        .await
        .map(drop)
    }

    /// This device's escrowed secret, after a recovery login.
    pub async fn release_escrow(
        &self,
        token: &SecretString,
        req: &EscrowRelease,
    ) -> Result<EscrowedSecret, AppError> {
        self.post("/v1/devices/escrow/release", Some(token), req)
            .await
    }

    /// The clinic's tamper alerts and outstanding gaps (the server records this read).
    pub async fn audit_alerts(&self, token: &SecretString) -> Result<AuditAlerts, AppError> {
        Self::send(self.request(Method::GET, "/v1/audit/alerts", Some(token))).await
    }

    pub async fn devices(&self, token: &SecretString) -> Result<DeviceList, AppError> {
        Self::send(self.request(Method::GET, "/v1/devices", Some(token))).await
    }

    pub async fn issue_enrollment_code(
        &self,
        token: &SecretString,
    ) -> Result<EnrollmentCodeIssued, AppError> {
        let path = "/v1/devices/enrollment-codes";
        Self::send(self.request(Method::POST, path, Some(token))).await
    }

    /// Says what the user's offline copy on this workstation holds (counts only), for the
    /// admins' devices list.
    pub async fn report_offline_copy(
        &self,
        token: &SecretString,
        report: &OfflineCopyReport,
    ) -> Result<(), AppError> {
        let path = "/v1/devices/this/offline-copy";
        Self::succeeded(self.request(Method::PUT, path, Some(token)).json(report))
            .await
            .map(drop)
    }

    pub async fn revoke_device(&self, token: &SecretString, id: Uuid) -> Result<(), AppError> {
        let path = format!("/v1/devices/{id}/revoke");
        Self::succeeded(self.request(Method::POST, &path, Some(token)))
            .await
            .map(drop)
    }

    pub async fn users(&self, token: &SecretString) -> Result<UserList, AppError> {
        Self::send(self.request(Method::GET, "/v1/users", Some(token))).await
    }

    pub async fn create_user(
        &self,
        token: &SecretString,
        new: &NewUser,
    ) -> Result<UserSummary, AppError> {
        self.post("/v1/users", Some(token), new).await
    }

    /// An admin's change to another user's account.
    pub async fn change_user(
        &self,
        token: &SecretString,
        user_id: Uuid,
        change: UserChange,
    ) -> Result<(), AppError> {
        let rb = match change {
            UserChange::Role(role) => self
                .request(
                    Method::POST,
                    &format!("/v1/users/{user_id}/role"),
                    Some(token),
                )
                .json(&RoleChange { role }),
            UserChange::Deactivate => self.request(
                Method::POST,
                &format!("/v1/users/{user_id}/deactivate"),
                Some(token),
            ),
            UserChange::ResetMfa => self.request(
                Method::POST,
                &format!("/v1/users/{user_id}/mfa/reset"),
                Some(token),
            ),
        };
        Self::succeeded(rb).await.map(drop)
    }

    /// Device-signed: no session token, the events' signatures are the credential.
    pub async fn upload_audit(&self, upload: &AuditUpload) -> Result<AuditReceipt, AppError> {
        self.post("/v1/audit/batches", None, upload).await
    }
}

/// What a failed request means: a TLS failure (a certificate the pinned CA did not sign, a
/// handshake gone wrong) is [`AppError::NotTrusted`]; anything else on the way (refused,
/// reset, timed out, no route) is [`AppError::Unreachable`], where offline work may begin.
fn transport(error: reqwest::Error) -> AppError {
    // The TLS error sits inside I/O errors (hyper-rustls wraps rustls's in one, hyper-util
    // in another), and an I/O error's `source` skips what it wraps: look inside each too.
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![&error];
    while let Some(e) = pending.pop() {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return AppError::NotTrusted;
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            pending.push(inner);
        }
        pending.extend(e.source());
    }
    AppError::Unreachable
}
