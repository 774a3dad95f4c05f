//! A patient's registration record: register one, read it, change it (`If-Match` names the
//! version the change was based on), and read its history. Each cut to the caller's field
//! policy; each change recorded with its audit event in its transaction.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{
    PatientFields, PatientHistory, PatientRecord, PatientRegistration, PatientSearchPage,
    PatientUpdate, RecordHistory, RecordWritten,
};
use uuid::Uuid;

use crate::audit::access::{Seen, Served};
use crate::clinical::fhir_everything;
use crate::clinical::fhir_patient::FhirPatient;
use crate::clinical::records;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, ChangeId, Id, IfMatch, Params, etag, written};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/patients", request_body = PatientRegistration, params(("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")),
    responses((status = 201, body = RecordWritten, headers(("ETag" = String)),
            // What a client does next with a new record: schemathesis's stateful phase follows
            // these (read it, its history, change it with the version just answered).
            links(
                ("ReadRecord" = (operation_id = "get_record",
                    parameters(("path.patient_id" = "$response.body#/id")))),
                ("ReadHistory" = (operation_id = "get_history",
                    parameters(("path.patient_id" = "$response.body#/id")))),
                ("Change" = (operation_id = "update",
                    parameters(("path.patient_id" = "$response.body#/id"),
                        ("header.If-Match" = "$response.header.ETag"))))
            )),
        (status = 400, body = ApiError, description = "A field is missing or malformed (named)"),
        (status = 403, body = ApiError, description = "The role may not write the named field"),
        (status = 409, body = ApiError,
            description = "`possible_duplicate` (with `candidates`), or `conflict` on `mrn`")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Body(registration): Body<PatientRegistration>,
) -> Result<impl IntoResponse, ServerError> {
    let w = records::register(
        &state,
        auth.scope(),
        auth.writer(seen, change_id),
        registration,
    )
    .await?;
    Ok((StatusCode::CREATED, written(w)))
}

#[utoipa::path(patch, path = "/v1/patients/{patient_id}",
    params(("patient_id" = Uuid, Path),
        ("If-Match" = String, Header, pattern = r#"^"[0-9]{1,19}"$"#, description = "The version the change is based on, quoted"),
        ("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")),
    request_body = PatientUpdate,
    responses((status = 200, body = RecordWritten, headers(("ETag" = String)),
            // The same change again on the version it was based on, now stale: a `conflict`.
            links(("ChangeStale" = (operation_id = "update",
                parameters(("path.patient_id" = "$request.path.patient_id"),
                    ("header.If-Match" = "$request.header.If-Match")))))),
        (status = 400, body = ApiError),
        (status = 403, body = ApiError, description = "The role may not write the named field"),
        (status = 404, body = ApiError),
        (status = 409, body = ApiError,
            description = "`conflict`: the record changed since; `current_version` and `fields`")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Id(patient_id): Id<Uuid>,
    IfMatch(based_on): IfMatch,
    Body(update): Body<PatientUpdate>,
) -> Result<impl IntoResponse, ServerError> {
    let w = records::update(
        &state,
        auth.scope(),
        auth.writer(seen, change_id),
        patient_id,
        based_on,
        update,
    )
    .await?;
    Ok(written(w))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The start of a family or given name (or both, two words), a birth date
    /// (`YYYY-MM-DD`), the start of a record number or phone number, or (for roles that may
    /// read it) a social security number, whole (`NNN-NN-NNNN`) or its last four digits
    /// (`XXX-XX-NNNN`).
    pub q: String,
    /// At most 50; 20 when absent.
    pub limit: Option<u32>,
    /// Where the page starts (a previous page's `next_offset`).
    pub offset: Option<u32>,
}

#[utoipa::path(get, path = "/v1/patients", params(SearchQuery),
    responses((status = 200, body = PatientSearchPage),
        (status = 400, body = ApiError, description = "`q`, `limit` or `offset` not usable")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn search(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(query): Params<SearchQuery>,
) -> Result<Served<records::SearchAnswer>, ServerError> {
    let page = records::search(
        &state,
        auth.scope(),
        &auth.principal.user,
        &query.q,
        query.limit,
        query.offset,
    )
    .await?;
    Ok(Served::new(page))
}

#[utoipa::path(get, path = "/v1/patients/{patient_id}/record",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, body = PatientRecord, headers(("ETag" = String))),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_record(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<impl IntoResponse, ServerError> {
    let record = records::record(&state, auth.scope(), &auth.principal.user, patient_id).await?;
    Ok(([etag(record.version)], Served::new(record)))
}

#[utoipa::path(get, path = "/v1/fhir/Patient/{patient_id}",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, description = "The patient's record as a FHIR R4 Patient, cut to \
            the caller's field policy", content_type = "application/fhir+json"),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_fhir_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<impl IntoResponse, ServerError> {
    let record = records::record(&state, auth.scope(), &auth.principal.user, patient_id).await?;
    let fhir = FhirPatient::new(record.id, record.version, &record.fields);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        Served::new(fhir),
    ))
}

#[utoipa::path(get, path = "/v1/fhir/Patient/{patient_id}/$everything",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, description = "The patient's record as a FHIR R4 Bundle (searchset): \
            the Patient, their Coverages and Appointments, each cut to the caller's field \
            policy", content_type = "application/fhir+json"),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_fhir_everything(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<impl IntoResponse, ServerError> {
    let bundle =
        fhir_everything::everything(&state, auth.scope(), &auth.principal.user, patient_id).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        Served::new(bundle),
    ))
}

#[utoipa::path(get, path = "/v1/patients/{patient_id}/history",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, body = RecordHistory<PatientFields>), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_history(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<Served<PatientHistory>, ServerError> {
    let history = records::history(&state, auth.scope(), &auth.principal.user, patient_id).await?;
    Ok(Served::new(history))
}
