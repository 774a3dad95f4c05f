//! Patient records you can write and trust: registration, updates with optimistic
//! concurrency, and the history of versions, each change with its audit event in the same
//! transaction (no event, no change) and every read and write cut to the field table
//! (`clinicdesk_protocol::policy::fields`).
//!
//! The stored content is the JSON text of [`PatientFields`] with every field present; its
//! SHA-256 is what the change's audit event commits to, and `audit verify` checks every
//! version in the history against it.

use clinicdesk_protocol::audit::{AuditAction, Hash32, Outcome, RecordChange, RequestSeen};
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{
    HumanName, PatientFields, PatientHistory, PatientRecord, PatientRegistration,
    PatientSearchPage, PatientUpdate, RecordHistory, RecordVersion, SEARCH_PAGE_MAX, UserInfo,
};
use clinicdesk_protocol::{Phi, policy::Role};
use uuid::Uuid;

use crate::audit::server_chain::{self, ServerEvent};
use crate::clinical::sensitive::{self, Sealer, SsnIndex, SsnQuery, normalize_ssn};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::state::AppState;
use crate::store::records::{self as stored, Derived, VersionRow};
use crate::store::sql::Script;
use crate::store::{ClinicTx, Store, clinics, field_keys};

const RESOURCE: Resource = Resource::Patient;
const REGISTER_ROUTE: &str = "/v1/patients";
const UPDATE_ROUTE: &str = "/v1/patients/{patient_id}";
/// The route of an imported record's `create` event: the console command.
pub(crate) const IMPORT_ROUTE: &str = "import";

/// Longest accepted text of any one field (a name part, a line of an address).
const TEXT_MAX: usize = 200;

/// Who is writing, from where (no workstation: the operator's console).
pub struct Writer<'a> {
    pub user: &'a UserInfo,
    pub device_id: Option<Uuid>,
    pub seen: RequestSeen,
    /// The id the workstation gave this change (`Idempotency-Key`): sent again, it is
    /// answered with what it stored the first time ([`replayed`]).
    pub change_id: Option<Uuid>,
}

/// What a write stored: the record's id and its new version (for the next `If-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub id: Uuid,
    pub version: u64,
}

/// The content as stored: JSON text with every field present.
pub fn encode(fields: &PatientFields) -> Result<String, ServerError> {
    serde_json::to_string(fields).map_err(|_| ServerError::Internal("record not encodable"))
}

fn decode(body: &str) -> Result<PatientFields, ServerError> {
    serde_json::from_str::<PatientFields>(body)
        .map(PatientFields::filled)
        .map_err(|_| ServerError::Internal("stored record malformed"))
}

/// The SHA-256 of stored content, as audit events commit to it.
pub fn content_hash(body: &str) -> Hash32 {
    Hash32::of_canonical(body.as_bytes())
}

/// The content a seeded patient starts with (version 0, before it has a history).
pub fn seeded_content(fields: PatientFields) -> Result<String, ServerError> {
    encode(&fields.filled())
}

/// Drops every field `role` may not read.
fn readable(mut fields: PatientFields, role: Role) -> PatientFields {
    fields.retain(|name| field_access(role, RESOURCE, name).reads());
    fields
}

/// Refuses a change that carries a field the role may not write, naming it.
fn check_writable(fields: &PatientFields, role: Role) -> Result<(), ServerError> {
    check_writable_names(RESOURCE, fields.present(), role)
}

/// Refuses a change of `resource` that carries (`present`) a field the role may not
/// write, naming it.
pub(crate) fn check_writable_names(
    resource: Resource,
    present: Vec<&'static str>,
    role: Role,
) -> Result<(), ServerError> {
    match present
        .into_iter()
        .find(|name| !field_access(role, resource, name).writes())
    {
        Some(field) => Err(ServerError::ForbiddenField { field }),
        None => Ok(()),
    }
}

/// Text a person typed: bounded, one line, no control characters.
pub(crate) fn text_ok(s: &str) -> bool {
    s.chars().count() <= TEXT_MAX && !s.chars().any(char::is_control)
}

/// Puts what a person typed into the one form the server stores (an SSN as `NNN-NN-NNNN`).
fn normalize(fields: &mut PatientFields) {
    if let Some(ssn) = fields.ssn.as_mut()
        && let Some(normal) = normalize_ssn(ssn)
    {
        *ssn = normal;
    }
}

/// Refuses a value no clinic would store, naming the field (never the value).
fn validate(fields: &PatientFields, today: time::Date) -> Result<(), ServerError> {
    let bad = |field: &'static str| Err(ServerError::BadRequest { field });
    if let Some(mrn) = &fields.mrn
        && (mrn.len() > 32 || !mrn.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return bad("mrn");
    }
    if let Some(ssn) = &fields.ssn
        && !ssn.is_empty()
        && normalize_ssn(ssn).as_deref() != Some(ssn.as_str())
    {
        return bad("ssn");
    }
    if let Some(HumanName {
        given,
        family,
        preferred,
    }) = &fields.name
        && (family.trim().is_empty() || ![given, family, preferred].iter().all(|s| text_ok(s)))
    {
        return bad("name");
    }
    if let Some(date) = &fields.birth_date {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(date, format) {
            Ok(d) if d <= today && d.year() >= 1850 => {}
            _ => return bad("birth_date"),
        }
    }
    if let Some(phone) = &fields.phone
        && (phone.len() > 32
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c)))
    {
        return bad("phone");
    }
    if let Some(email) = &fields.email
        && (!text_ok(email) || (!email.is_empty() && !email.contains('@')))
    {
        return bad("email");
    }
    if let Some(a) = &fields.address
        && (a.line.len() > 3
            || !a
                .line
                .iter()
                .chain([&a.city, &a.state, &a.postal_code, &a.country])
                .all(|s| text_ok(s)))
    {
        return bad("address");
    }
    if let Some(language) = &fields.language
        && (language.len() > 35
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return bad("language");
    }
    if let Some(c) = &fields.emergency_contact
        && ![&c.name, &c.relationship, &c.phone]
            .iter()
            .all(|s| text_ok(s))
    {
        return bad("emergency_contact");
    }
    if let Some(ids) = &fields.identifiers
        && (ids.len() > 20
            || !ids
                .iter()
                .all(|i| text_ok(&i.system) && text_ok(&i.value) && text_ok(&i.kind)))
    {
        return bad("identifiers");
    }
    Ok(())
}

fn today(now_ms: i64) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(time::Date::MAX)
}

fn display_name(fields: &PatientFields) -> String {
    fields
        .name
        .as_ref()
        .map(HumanName::display)
        .unwrap_or_default()
}

/// The columns derived from `fields` (`name` is [`display_name`]'s).
fn derived<'a>(fields: &'a PatientFields, name: &'a str) -> Derived<'a> {
    fn text(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or_default()
    }
    let parts = fields.name.as_ref();
    Derived {
        name,
        given: parts.map_or("", |n| n.given.as_str()),
        family: parts.map_or("", |n| n.family.as_str()),
        birth_date: text(&fields.birth_date),
        phone: text(&fields.phone),
        mrn: text(&fields.mrn),
    }
}

/// Record numbers handed out in one transaction (hold the clinic's lock): the clinic's
/// patients are counted once, for the first, and each next one starts after the last. (A
/// count per patient made an import's every record slower than the one before.)
#[derive(Default)]
struct RecordNumbers {
    next: Option<u64>,
    /// The numbers on file (or handed out here) up to `known_to`, read a window at a time:
    /// one read for many patients.
    taken: std::collections::HashSet<String>,
    known_to: u64,
}

/// Record numbers looked up per read by [`RecordNumbers`]: an import batch's worth.
const NUMBER_WINDOW: u64 = 256;

impl RecordNumbers {
    /// The next free record number of the clinic.
    async fn assign(&mut self, tx: &mut ClinicTx) -> Result<String, ServerError> {
        let mut n = match self.next {
            Some(n) => n,
            None => stored::patient_count(tx).await? + 1,
        };
        loop {
            if n > self.known_to {
                let last = n + NUMBER_WINDOW - 1;
                self.taken =
                    stored::mrns_between(tx, &format!("{n:08}"), &format!("{last:08}")).await?;
                self.known_to = last;
            }
            let mrn = format!("{n:08}");
            n += 1;
            if self.taken.insert(mrn.clone()) {
                self.next = Some(n);
                return Ok(mrn);
            }
        }
    }
}

/// Seals the SSN `content` carries in plaintext, putting its reference in its place: the
/// blind indexes to store beside the record, or `None` if it carries none.
async fn seal_ssn(
    tx: &mut ClinicTx,
    state: &AppState,
    content: &mut PatientFields,
) -> Result<Option<SsnIndex>, ServerError> {
    let Some(ssn) = content.ssn.take() else {
        return Ok(None);
    };
    let now = state.clock.now_ms();
    let index = sensitive::ssn_index(tx, &*state.keys, now, &ssn).await?;
    content.ssn = Some(if ssn.is_empty() {
        ssn
    } else {
        sensitive::seal(tx, &*state.keys, now, "ssn", &ssn).await?
    });
    Ok(Some(index))
}

/// The SSN a stored reference names ('' for none).
async fn reveal_ssn(
    tx: &mut ClinicTx,
    state: &AppState,
    stored: Option<&str>,
) -> Result<zeroize::Zeroizing<String>, ServerError> {
    sensitive::open(tx, &*state.keys, "ssn", stored.unwrap_or_default()).await
}

/// The SSN a patient's stored content holds ('' for none), for remaking its blind indexes.
pub(crate) async fn stored_ssn(
    tx: &mut ClinicTx,
    keys: &dyn crate::secrets::kek::KeyProvider,
    body: &str,
) -> Result<zeroize::Zeroizing<String>, ServerError> {
    let fields = decode(body)?;
    sensitive::open(tx, keys, "ssn", fields.ssn.as_deref().unwrap_or_default()).await
}

/// Stored content as `role` may read it: what it may not see dropped, and what is sealed
/// (and it may see) opened.
async fn as_read(
    tx: &mut ClinicTx,
    state: &AppState,
    body: &str,
    role: Role,
) -> Result<PatientFields, ServerError> {
    let mut fields = readable(decode(body)?, role);
    if let Some(ssn) = fields.ssn.as_mut() {
        *ssn = reveal_ssn(tx, state, Some(ssn)).await?.to_string();
    }
    Ok(fields)
}

/// A record of some resource: which one, and whose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordOf {
    pub resource: Resource,
    pub id: Uuid,
    pub patient_id: Uuid,
}

impl RecordOf {
    fn patient(id: Uuid) -> Self {
        Self {
            resource: RESOURCE,
            id,
            patient_id: id,
        }
    }
}

/// The change's audit event: the fields changed, and the content hashes around it.
pub(crate) fn change_event(
    by: &Writer<'_>,
    action: AuditAction,
    record: RecordOf,
    fields: &[&'static str],
    change: RecordChange,
    route: &str,
) -> ServerEvent {
    ServerEvent {
        actor_user_id: by.user.user_id,
        actor_role: by.user.role,
        action,
        resource_type: record.resource.as_str().to_owned(),
        resource_id: record.id.to_string(),
        patient_id: Some(record.patient_id),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        outcome: Outcome::Success,
        route: route.to_owned(),
        break_glass: None,
        request: by.seen.clone(),
        change: Some(change),
    }
}

/// A patient a `possible_duplicate` answer named: a view of the fields the check compared.
fn duplicate_shown(by: &Writer<'_>, patient_id: Uuid) -> ServerEvent {
    ServerEvent {
        actor_user_id: by.user.user_id,
        actor_role: by.user.role,
        action: AuditAction::View,
        resource_type: RESOURCE.as_str().to_owned(),
        resource_id: patient_id.to_string(),
        patient_id: Some(patient_id),
        fields: ["name", "birth_date", "phone"].map(str::to_owned).to_vec(),
        outcome: Outcome::Success,
        route: REGISTER_ROUTE.to_owned(),
        break_glass: None,
        request: by.seen.clone(),
        change: None,
    }
}

/// Records the change's event and its version, in the caller's transaction.
pub(crate) async fn store_version(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    event: ServerEvent,
    body: String,
    reason: String,
) -> Result<(), ServerError> {
    let mut row = version_row(&event, body, reason, by, state.clock.now_ms())?;
    let ids = server_chain::record_in(tx, state, scope, vec![event]).await?;
    row.audit_event_id = *ids
        .first()
        .ok_or(ServerError::Internal("no event recorded"))?;
    stored::insert_version(tx, &row).await
}

/// Records a new record's version 1 (its content `body`, holding `fields`) and its
/// `create` event, in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store_first_version(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    record: RecordOf,
    fields: &[&'static str],
    (body, route): (String, &str),
    reason: String,
) -> Result<(), ServerError> {
    let change = RecordChange {
        version: 1,
        before: None,
        after: content_hash(&body),
    };
    let event = change_event(by, AuditAction::Create, record, fields, change, route);
    store_version(tx, state, scope, by, event, body, reason).await
}

/// The version a change `event` stores, before its event has its id (nil until then).
fn version_row(
    event: &ServerEvent,
    body: String,
    reason: String,
    by: &Writer<'_>,
    now_ms: i64,
) -> Result<VersionRow, ServerError> {
    let change = event
        .change
        .as_ref()
        .ok_or(ServerError::Internal("change without version"))?;
    Ok(VersionRow {
        resource_type: event.resource_type.clone(),
        record_id: Uuid::parse_str(&event.resource_id)
            .map_err(|_| ServerError::Internal("record id"))?,
        version: change.version,
        patient_id: event.patient_id,
        body,
        changed_fields: event.fields.clone(),
        actor_user_id: by.user.user_id,
        actor_role: by.user.role,
        device_id: by.device_id,
        recorded_at_ms: now_ms,
        reason,
        audit_event_id: Uuid::nil(),
        change_id: by.change_id,
    })
}

/// The answer to a change sent again: if `by`'s change id already stored a version (its
/// first answer was lost on the way), what it stored, so the change is neither applied twice
/// nor refused as stale. The same id on another resource or record (`record`, when the
/// request names it), or from another user, is a `conflict` on `Idempotency-Key`. Call it
/// holding the clinic's lock.
pub(crate) async fn replayed(
    tx: &mut ClinicTx,
    by: &Writer<'_>,
    resource: Resource,
    record: Option<Uuid>,
) -> Result<Option<Written>, ServerError> {
    let Some(change_id) = by.change_id else {
        return Ok(None);
    };
    match stored::version_by_change(tx, change_id).await? {
        None => Ok(None),
        Some((kind, id, version, actor))
            if kind == resource.as_str()
                && actor == by.user.user_id
                && record.is_none_or(|r| r == id) =>
        {
            Ok(Some(Written { id, version }))
        }
        Some(_) => Err(ServerError::Conflict {
            field: "Idempotency-Key",
        }),
    }
}

/// What a new record must have.
fn required(fields: &PatientFields) -> Result<(), ServerError> {
    if fields.name.is_none() {
        return Err(ServerError::BadRequest { field: "name" });
    }
    if fields.birth_date.is_none() {
        return Err(ServerError::BadRequest {
            field: "birth_date",
        });
    }
    Ok(())
}

/// A new patient's first version, made ready in the caller's transaction (record number
/// assigned, SSN sealed) but not yet stored.
struct NewRecord {
    content: PatientFields,
    ssn: Option<SsnIndex>,
    name: String,
}

async fn prepare_new(
    tx: &mut ClinicTx,
    state: &AppState,
    numbers: &mut RecordNumbers,
    mut content: PatientFields,
) -> Result<NewRecord, ServerError> {
    match content.mrn.as_deref() {
        Some("") | None => content.mrn = Some(numbers.assign(tx).await?),
        Some(mrn) if stored::mrn_taken(tx, mrn).await? => {
            return Err(ServerError::Conflict { field: "mrn" });
        }
        Some(_) => {}
    }
    // Sealed before a duplicate check reads the content; a refusal rolls it back.
    let ssn = seal_ssn(tx, state, &mut content).await?;
    let name = display_name(&content);
    Ok(NewRecord { content, ssn, name })
}

/// Stores `new` as version 1 of a new patient: its row and blind indexes. Answers its id,
/// its stored content and its `create` event (which the caller records with the version).
async fn insert_new(
    tx: &mut ClinicTx,
    by: &Writer<'_>,
    new: NewRecord,
    source_key: Option<&str>,
    id: Option<Uuid>,
) -> Result<(Uuid, String, ServerEvent), ServerError> {
    let derived = derived(&new.content, &new.name);
    let body = encode(&new.content)?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    stored::insert_patient_record(tx, id, &body, &derived, source_key).await?;
    if let Some(index) = new.ssn {
        field_keys::set_ssn_index(tx, id, &index.whole, &index.last4, index.key_id).await?;
    }
    let change = RecordChange {
        version: 1,
        before: None,
        after: content_hash(&body),
    };
    let route = if source_key.is_some() {
        IMPORT_ROUTE
    } else {
        REGISTER_ROUTE
    };
    let event = change_event(
        by,
        AuditAction::Create,
        RecordOf::patient(id),
        &new.content.present(),
        change,
        route,
    );
    Ok((id, body, event))
}

/// Registers a new patient: version 1, its event, its history. A registration that matches
/// patients on file is refused with their ids unless `confirm_new_person` is set.
pub async fn register(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    registration: PatientRegistration,
) -> Result<Written, ServerError> {
    let PatientRegistration {
        id,
        mut fields,
        confirm_new_person,
    } = registration;
    check_writable(&fields, by.user.role)?;
    normalize(&mut fields);
    validate(&fields, today(state.clock.now_ms()))?;
    let duplicates = if confirm_new_person {
        Duplicates::Allowed
    } else {
        Duplicates::Refused
    };
    let created = create(state, scope, &by, fields, duplicates, None, id).await?;
    Ok(Written {
        id: created.id(),
        version: 1,
    })
}

/// Whether a new record matching patients on file is refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Duplicates {
    Refused,
    Allowed,
}

/// What an import did with one source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New(Uuid),
    /// Imported before (the same source id): nothing changed.
    AlreadyImported(Uuid),
}

impl Created {
    pub fn id(self) -> Uuid {
        match self {
            Created::New(id) | Created::AlreadyImported(id) => id,
        }
    }
}

/// Brings patients in from another system, as `by` (the operator's console or an admin), in one transaction
/// for the batch: each a record with version 1 and its `create` event and history like a
/// registration, its record number assigned here, its source id kept so that importing it
/// again changes nothing; the batch's events join the clinic's chain together. Values are
/// checked as a registration's are: an item refused (by field name) is answered so, and the
/// others still go in. A failure of the database fails the batch, and none of it is stored.
pub async fn import_batch(
    state: &AppState,
    by: &Writer<'_>,
    scope: &ClinicScope,
    items: Vec<(String, PatientFields)>,
) -> Result<Vec<Result<Created, ServerError>>, ServerError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    // Read once for the batch: which sources are here already, and (a window at a time)
    // which record numbers are taken. The rows go in together at the end, so what this
    // batch takes is tracked here too.
    let keys: Vec<&str> = items.iter().map(|(key, _)| key.as_str()).collect();
    let mut here = stored::imported_of(&mut tx, &keys).await?;
    let mut numbers = RecordNumbers::default();
    let mut given_numbers = std::collections::HashSet::new();
    let mut sealer = Sealer::default();
    let mut answers = Vec::with_capacity(items.len());
    let mut new = Vec::new();
    for (key, mut fields) in items {
        normalize(&mut fields);
        if let Err(refused) = validate(&fields, today(now)).and_then(|()| required(&fields)) {
            answers.push(Err(refused));
            continue;
        }
        if let Some(id) = here.get(&key) {
            answers.push(Ok(Created::AlreadyImported(*id)));
            continue;
        }
        let mut content = fields.filled();
        match content.mrn.as_deref() {
            Some("") | None => content.mrn = Some(numbers.assign(&mut tx).await?),
            Some(mrn) => {
                if given_numbers.contains(mrn) || stored::mrn_taken(&mut tx, mrn).await? {
                    answers.push(Err(ServerError::Conflict { field: "mrn" }));
                    continue;
                }
                given_numbers.insert(mrn.to_owned());
                numbers.taken.insert(mrn.to_owned());
            }
        }
        let mut index = SsnIndex::none();
        if let Some(ssn) = content.ssn.take() {
            let (reference, made) = sealer.seal_ssn(&mut tx, &*state.keys, now, &ssn).await?;
            content.ssn = Some(reference);
            index = made;
        }
        let id = Uuid::now_v7();
        here.insert(key.clone(), id);
        let body = encode(&content)?;
        let change = RecordChange {
            version: 1,
            before: None,
            after: content_hash(&body),
        };
        let event = change_event(
            by,
            AuditAction::Create,
            RecordOf::patient(id),
            &content.present(),
            change,
            IMPORT_ROUTE,
        );
        let name = display_name(&content);
        new.push((id, key, content, name, body, index, event));
        answers.push(Ok(Created::New(id)));
    }
    let rows: Vec<stored::NewPatientRow<'_>> = new
        .iter()
        .map(
            |(id, key, content, name, body, index, _)| stored::NewPatientRow {
                id: *id,
                body,
                derived: derived(content, name),
                import_key: key,
                ssn_index: &index.whole,
                ssn_last4_index: &index.last4,
                ssn_index_key: index.key_id,
            },
        )
        .collect();
    let mut script = Script::default();
    script
        .extend(field_keys::insert_sealed_rows(&tx, &sealer.into_rows()))
        .extend(stored::insert_patient_rows(&tx, &rows));
    drop(rows);
    let mut versions = Vec::with_capacity(new.len());
    let mut events = Vec::with_capacity(new.len());
    for (_, _, _, _, body, _, event) in new {
        versions.push(version_row(&event, body, String::new(), by, now)?);
        events.push(event);
    }
    let (events, ids) = server_chain::script_in(&mut tx, state, scope, events).await?;
    if ids.len() != versions.len() {
        return Err(ServerError::Internal("an import event was not recorded"));
    }
    for (row, audit_event_id) in versions.iter_mut().zip(ids) {
        row.audit_event_id = audit_event_id;
    }
    // The events before the versions that name them.
    script
        .extend(events.into_statements())
        .extend(stored::insert_version_rows(&tx, &versions)?);
    script.execute(&mut tx).await?;
    tx.commit().await?;
    Ok(answers)
}

/// A new record: version 1, its `create` event and its history, in one transaction.
async fn create(
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    fields: PatientFields,
    duplicates: Duplicates,
    source_key: Option<&str>,
    id: Option<Uuid>,
) -> Result<Created, ServerError> {
    required(&fields)?;
    let mut tx = state.store.clinic_tx(scope).await?;
    // One registration at a time per clinic: record numbers and duplicate checks see
    // every earlier one.
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = replayed(&mut tx, by, RESOURCE, id).await? {
        return Ok(Created::New(w.id));
    }
    // A workstation names the patient it registered offline, so its later changes (a
    // booking) can name them too; an id already on file is refused.
    if let Some(id) = id
        && (id.is_nil() || stored::patient_record(&mut tx, id).await?.is_some())
    {
        return Err(ServerError::Conflict { field: "id" });
    }
    if let Some(key) = source_key
        && let Some(id) = stored::imported(&mut tx, key).await?
    {
        return Ok(Created::AlreadyImported(id));
    }
    let new = prepare_new(
        &mut tx,
        state,
        &mut RecordNumbers::default(),
        fields.filled(),
    )
    .await?;
    if duplicates == Duplicates::Refused {
        let derived = derived(&new.content, &new.name);
        let candidates =
            stored::possible_duplicates(&mut tx, &new.name, derived.birth_date, derived.phone)
                .await?;
        if !candidates.is_empty() {
            // The answer tells the caller these patients exist: recorded like a search's
            // results, before it leaves (no event, no answer).
            drop(tx);
            let shown = candidates
                .iter()
                .map(|id| duplicate_shown(by, *id))
                .collect();
            server_chain::record(state, scope, shown).await?;
            return Err(ServerError::PossibleDuplicate { candidates });
        }
    }
    let (id, body, event) = insert_new(&mut tx, by, new, source_key, id).await?;
    store_version(&mut tx, state, scope, by, event, body, String::new()).await?;
    tx.commit().await?;
    Ok(Created::New(id))
}

/// Changes the fields `update` carries, if the record is still at `based_on`; otherwise a
/// conflict naming the fields changed since. A change that changes nothing stores nothing.
pub async fn update(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    patient_id: Uuid,
    based_on: u64,
    update: PatientUpdate,
) -> Result<Written, ServerError> {
    let PatientUpdate { mut fields, reason } = update;
    check_writable(&fields, by.user.role)?;
    normalize(&mut fields);
    validate(&fields, today(state.clock.now_ms()))?;
    if fields.present().is_empty() {
        return Err(ServerError::BadRequest { field: "fields" });
    }
    let reason = reason.into_inner();
    if !text_ok(&reason) {
        return Err(ServerError::BadRequest { field: "reason" });
    }

    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = replayed(&mut tx, &by, RESOURCE, Some(patient_id)).await? {
        return Ok(w);
    }
    let current = stored::patient_record(&mut tx, patient_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    if current.version != based_on {
        let of = RecordOf::patient(patient_id);
        return Err(stale(
            &mut tx,
            of,
            PatientFields::NAMES,
            based_on,
            current.version,
            by.user.role,
        )
        .await?);
    }
    let before = decode(&current.body)?;
    let mut after = before.clone();
    // The stored SSN is a reference: compared by its value, sealed anew only if it changed.
    let typed_ssn = fields.ssn.take();
    after.apply(&fields);
    let mut ssn = None;
    if let Some(typed) = typed_ssn {
        let on_file = reveal_ssn(&mut tx, state, before.ssn.as_deref()).await?;
        if typed != *on_file {
            after.ssn = Some(typed);
            ssn = seal_ssn(&mut tx, state, &mut after).await?;
        }
    }
    let changed = before.differing(&after);
    if changed.is_empty() {
        return Ok(Written {
            id: patient_id,
            version: current.version,
        });
    }
    if changed.contains(&"mrn") {
        let mrn = after.mrn.as_deref().unwrap_or_default();
        if mrn.is_empty() {
            return Err(ServerError::BadRequest { field: "mrn" });
        }
        if stored::mrn_taken(&mut tx, mrn).await? {
            return Err(ServerError::Conflict { field: "mrn" });
        }
    }
    let body = encode(&after)?;
    let name = display_name(&after);
    let derived = derived(&after, &name);
    if !stored::update_patient_record(&mut tx, patient_id, based_on, &body, &derived).await? {
        return Err(ServerError::Internal(
            "record changed under the clinic lock",
        ));
    }
    if let Some(index) = ssn {
        field_keys::set_ssn_index(
            &mut tx,
            patient_id,
            &index.whole,
            &index.last4,
            index.key_id,
        )
        .await?;
    }
    let version = based_on + 1;
    let change = RecordChange {
        version,
        before: Some(content_hash(&current.body)),
        after: content_hash(&body),
    };
    let event = change_event(
        &by,
        AuditAction::Update,
        RecordOf::patient(patient_id),
        &changed,
        change,
        UPDATE_ROUTE,
    );
    store_version(&mut tx, state, scope, &by, event, body, reason).await?;
    tx.commit().await?;
    Ok(Written {
        id: patient_id,
        version,
    })
}

/// A patient whose stored columns disagree with their content: by clinic, patient and
/// column, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    pub clinic_id: Uuid,
    /// `patient` or `appointment`.
    pub resource: &'static str,
    pub id: String,
    /// The column, or `record` (the content does not read) or `ssn` (its sealed value does
    /// not open).
    pub column: &'static str,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.column {
            "record" => "its content cannot be read".to_owned(),
            "ssn" => "its sealed ssn does not open".to_owned(),
            column => format!("its {column} column does not match its content"),
        };
        write!(
            f,
            "clinic {} {} {}: {what}",
            self.clinic_id, self.resource, self.id
        )
    }
}

/// Checks, for `audit verify`, that every patient's derived columns (what the schedule and
/// searches read: name, birth date, phone, record number, the name keys and the SSN's blind
/// indexes) agree with their content, and that each sealed value opens: an insider who edits
/// a column to mislead a search is named like one who edits the trail.
pub async fn check_derived(
    store: &Store,
    console: &Console,
    keys: &dyn crate::secrets::kek::KeyProvider,
) -> Result<Vec<Disagreement>, ServerError> {
    let mut found = Vec::new();
    for clinic in field_keys::clinic_ids(store).await? {
        let scope = ClinicScope::of_console(console, clinic);
        let mut tx = store.clinic_tx(&scope).await?;
        for row in stored::patient_columns(&mut tx).await? {
            let mut disagree = |column: &'static str| {
                found.push(Disagreement {
                    clinic_id: clinic,
                    resource: "patient",
                    id: row.id.clone(),
                    column,
                });
            };
            let Some(fields) = row.record.as_deref().and_then(|b| decode(b).ok()) else {
                disagree("record");
                continue;
            };
            let name = display_name(&fields);
            let d = derived(&fields, &name);
            let mut want: Vec<(&str, String)> = vec![
                ("name", d.name.to_owned()),
                ("birth_date", d.birth_date.to_owned()),
                ("phone", d.phone.to_owned()),
                ("phone_key", stored::phone_key(d.phone)),
                ("mrn", d.mrn.to_owned()),
                ("given_key", stored::search_key(d.given)),
                ("family_key", stored::search_key(d.family)),
            ];
            let reference = fields.ssn.clone().unwrap_or_default();
            match sensitive::open(&mut tx, keys, "ssn", &reference).await {
                Ok(ssn) => {
                    let index =
                        sensitive::ssn_index_if_keyed(&mut tx, keys, &ssn, row.ssn_index_key)
                            .await?
                            .unwrap_or_else(SsnIndex::none);
                    want.push(("ssn_index", index.whole));
                    want.push(("ssn_last4_index", index.last4));
                }
                Err(_) => disagree("ssn"),
            }
            for (column, stored_value) in &row.derived {
                if let Some((_, expected)) = want.iter().find(|(c, _)| c == column)
                    && stored_value.as_deref() != Some(expected.as_str())
                {
                    disagree(column);
                }
            }
        }
        tx.commit().await?;
    }
    Ok(found)
}

/// The conflict for a change based on `based_on` when the record is at `current_version`:
/// the names of the fields the versions since changed, as far as `role` may see them (a
/// caller based on a version that never was gets every field changed since 0).
pub(crate) async fn stale(
    tx: &mut ClinicTx,
    record: RecordOf,
    names: &'static [&'static str],
    based_on: u64,
    current_version: u64,
    role: Role,
) -> Result<ServerError, ServerError> {
    let versions = stored::versions(tx, record.resource.as_str(), record.id).await?;
    let changed: Vec<&str> = versions
        .iter()
        .filter(|v| v.version > based_on)
        .flat_map(|v| v.changed_fields.iter().map(String::as_str))
        .collect();
    let fields = names
        .iter()
        .copied()
        .filter(|name| changed.contains(name) && field_access(role, record.resource, name).reads())
        .collect();
    Ok(ServerError::StaleVersion {
        current_version,
        fields,
    })
}

/// A search's page as served, and whether it matched on the SSN: a match by SSN tells the
/// searcher whose number it is, so each result's disclosure names `ssn` too (the number is
/// not sent back, and the query is never recorded).
#[derive(Debug, serde::Serialize)]
#[serde(transparent)]
pub struct SearchAnswer {
    pub page: PatientSearchPage,
    #[serde(skip)]
    pub by_ssn: bool,
}

/// The fields a search result shows (if the reader may see them).
const SEARCH_SHOWS: [&str; 5] = ["mrn", "name", "birth_date", "phone", "active"];

/// Longest accepted search text.
const QUERY_MAX: usize = 100;

/// What a typed search means: a birth date, the start of a record or phone number (digits
/// and separators), or the start of a name (one or two words). `None`: nothing to search.
fn understand(q: &str) -> Option<(String, Option<String>, Kind)> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > QUERY_MAX || q.chars().any(char::is_control) {
        return None;
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(q, date).is_ok() {
        return Some((q.to_owned(), None, Kind::BirthDate));
    }
    if let Some(kind) = ssn_typed(q) {
        return Some((q.to_owned(), None, kind));
    }
    if q.chars().any(|c| c.is_ascii_digit())
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+(). ".contains(c))
        && !q.contains(' ')
    {
        return Some((q.to_owned(), None, Kind::Number));
    }
    let mut words = q.split_whitespace().map(stored::search_key);
    let first = words.next()?;
    let second = words.next();
    if words.next().is_some() {
        return None;
    }
    Some((first, second, Kind::Name))
}

#[derive(Clone, Copy)]
enum Kind {
    Name,
    BirthDate,
    Number,
    /// A whole SSN, `NNN-NN-NNNN`.
    Ssn,
    /// The last four digits of an SSN, typed as paper forms mask the rest: `XXX-XX-NNNN`
    /// (or with `*`).
    SsnLast4,
}

/// Whether `q` is an SSN, whole or masked to its last four digits. Only the dashed form is:
/// nine bare digits are the start of a record or phone number.
fn ssn_typed(q: &str) -> Option<Kind> {
    let b = q.as_bytes();
    if b.len() != 11 || b[3] != b'-' || b[6] != b'-' || !b[7..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let head = [&b[..3], &b[4..6]].concat();
    if head.iter().all(u8::is_ascii_digit) {
        Some(Kind::Ssn)
    } else if head.iter().all(|c| matches!(c, b'x' | b'X' | b'*')) {
        Some(Kind::SsnLast4)
    } else {
        None
    }
}

/// One page of the clinic's patients matching `q`, each cut to what a search shows and
/// `user` may read. Each match is a disclosure, recorded by the route. A search by SSN is
/// open only to roles that may read it (it would otherwise tell them whose it is), and looks
/// up a blind index.
pub async fn search(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    q: &str,
    limit: Option<u32>,
    offset: Option<u32>,
) -> Result<SearchAnswer, ServerError> {
    let limit = limit.unwrap_or(20);
    if limit == 0 || limit > SEARCH_PAGE_MAX {
        return Err(ServerError::BadRequest { field: "limit" });
    }
    let offset = offset.unwrap_or(0);
    if offset > 10_000 {
        return Err(ServerError::BadRequest { field: "offset" });
    }
    let Some((first, second, kind)) = understand(q) else {
        return Err(ServerError::BadRequest { field: "q" });
    };
    let search = match kind {
        Kind::Name => Some(stored::Search::Name(&first, second.as_deref())),
        Kind::BirthDate => Some(stored::Search::BirthDate(&first)),
        Kind::Number => Some(stored::Search::Number(&first)),
        Kind::Ssn | Kind::SsnLast4 => None,
    };
    if search.is_none() && !field_access(user.role, RESOURCE, "ssn").reads() {
        return Err(ServerError::ForbiddenField { field: "ssn" });
    }
    let mut tx = state.store.clinic_tx(scope).await?;
    // One more than the page: whether there is a next one.
    let mut rows = match search {
        Some(search) => stored::search(&mut tx, &search, limit + 1, offset).await?,
        None => {
            let query = match kind {
                Kind::SsnLast4 => SsnQuery::Last4(first.get(7..).unwrap_or_default()),
                _ => SsnQuery::Whole(&first),
            };
            let (column, indexes) = sensitive::ssn_lookup(&mut tx, &*state.keys, &query).await?;
            field_keys::by_index(&mut tx, column, &indexes, limit + 1, offset).await?
        }
    };
    tx.commit().await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let results = rows
        .into_iter()
        .map(|(id, row)| {
            let mut fields = readable(decode(&row.body)?, user.role);
            fields.retain(|name| SEARCH_SHOWS.contains(&name));
            Ok(PatientRecord {
                id,
                version: row.version,
                fields,
            })
        })
        .collect::<Result<_, ServerError>>()?;
    Ok(SearchAnswer {
        page: PatientSearchPage {
            results,
            next_offset: more.then_some(offset + limit),
        },
        by_ssn: matches!(kind, Kind::Ssn | Kind::SsnLast4),
    })
}

/// The patient's record as `user` may read it.
pub async fn record(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<PatientRecord, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    let record = record_in(&mut tx, state, user, patient_id).await?;
    tx.commit().await?;
    Ok(record)
}

/// [`record`] in the caller's transaction.
pub(crate) async fn record_in(
    tx: &mut ClinicTx,
    state: &AppState,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<PatientRecord, ServerError> {
    let stored = stored::patient_record(tx, patient_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let fields = as_read(tx, state, &stored.body, user.role).await?;
    Ok(PatientRecord {
        id: patient_id,
        version: stored.version,
        fields,
    })
}

/// Every version of the patient's record, oldest first, each cut to what `user` may read.
pub async fn history(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<PatientHistory, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    let exists = stored::patient_record(&mut tx, patient_id).await?.is_some();
    let rows = stored::versions(&mut tx, RESOURCE.as_str(), patient_id).await?;
    if !exists {
        return Err(ServerError::NotFound);
    }
    let role = user.role;
    let mut read = Vec::with_capacity(rows.len());
    for row in &rows {
        read.push(as_read(&mut tx, state, &row.body, role).await?);
    }
    tx.commit().await?;
    let mut read = read.into_iter();
    let versions = versions_as_read(rows, RESOURCE, role, |_| {
        read.next()
            .ok_or(ServerError::Internal("history read short"))
    })?;
    Ok(RecordHistory {
        id: patient_id,
        patient_id,
        versions,
    })
}

/// A record's stored versions as `role` may read them: the names of the fields each
/// changed cut to the table, and each version's content as `fields` reads and cuts it.
pub(crate) fn versions_as_read<F>(
    rows: Vec<VersionRow>,
    resource: Resource,
    role: Role,
    mut fields: impl FnMut(&str) -> Result<F, ServerError>,
) -> Result<Vec<RecordVersion<F>>, ServerError> {
    rows.into_iter()
        .map(|row| {
            Ok(RecordVersion {
                version: row.version,
                recorded_at_ms: row.recorded_at_ms,
                actor_user_id: row.actor_user_id,
                actor_role: row.actor_role,
                device_id: row.device_id,
                changed: row
                    .changed_fields
                    .into_iter()
                    .filter(|f| field_access(role, resource, f).reads())
                    .collect(),
                reason: Phi::new(row.reason),
                fields: fields(&row.body)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::wire::Address;

    use super::*;

    fn day(s: &str) -> time::Date {
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
    }

    #[test]
    fn values_no_clinic_would_store_are_refused_by_field() {
        let today = day("2026-12-06");
        let with = |f: PatientFields| validate(&f, today).err().and_then(|e| e.field());
        let mut f = PatientFields {
            birth_date: Some("2027-01-01".into()),
            ..Default::default()
        };
        assert_eq!(with(f.clone()), Some("birth_date"), "in the future");
        f.birth_date = Some("1990-02-30".into());
        assert_eq!(with(f.clone()), Some("birth_date"), "no such day");
        f.birth_date = Some("1990-02-28".into());
        assert_eq!(with(f.clone()), None);
        f.name = Some(HumanName {
            given: "A\u{1b}[2J".into(),
            family: "B".into(),
            preferred: String::new(),
        });
        assert_eq!(with(f.clone()), Some("name"), "control characters");
        f.name = None;
        f.address = Some(Address {
            line: vec!["x".repeat(TEXT_MAX + 1)],
            ..Default::default()
        });
        assert_eq!(with(f.clone()), Some("address"), "too long");
        f.address = None;
        f.phone = Some("555-0100; DROP".into());
        assert_eq!(with(f), Some("phone"));
    }

    #[test]
    fn a_role_writes_only_what_the_table_lets_it() {
        let f = PatientFields {
            phone: Some("555".into()),
            ..Default::default()
        };
        assert!(check_writable(&f, Role::FrontDesk).is_ok());
        for role in [Role::Clinician, Role::Billing, Role::Admin] {
            assert_eq!(
                check_writable(&f, role).err().and_then(|e| e.field()),
                Some("phone")
            );
        }
    }
}
