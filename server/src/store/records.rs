//! Records and their history: a patient's stored content (JSON text) with its version, and
//! `record_versions`, every version of every record, append-only. What the content means
//! and who may change it is `crate::clinical::records`'s business; here are the statements.

use super::*;

/// A patient's content as stored, and its version (0 until the first write through the
/// record layer).
pub struct StoredRecord {
    pub version: u64,
    pub body: String,
}

/// The columns derived from a patient's content, for the schedule, the chart and searches.
pub struct Derived<'a> {
    /// As the schedule and chart show it.
    pub name: &'a str,
    pub given: &'a str,
    pub family: &'a str,
    pub birth_date: &'a str,
    pub phone: &'a str,
    pub mrn: &'a str,
}

/// One stored version of a record.
pub struct VersionRow {
    pub resource_type: String,
    pub record_id: Uuid,
    pub version: u64,
    pub patient_id: Option<Uuid>,
    pub body: String,
    pub changed_fields: Vec<String>,
    pub actor_user_id: Uuid,
    pub actor_role: Role,
    pub device_id: Option<Uuid>,
    pub recorded_at_ms: i64,
    pub reason: String,
    pub audit_event_id: Uuid,
    /// The id the workstation gave the change, if it gave one.
    pub change_id: Option<Uuid>,
}

fn version_of(v: i64) -> Result<u64, ServerError> {
    u64::try_from(v).map_err(|_| ServerError::Internal("stored version negative"))
}

fn db_version(v: u64) -> Result<i64, ServerError> {
    i64::try_from(v).map_err(|_| ServerError::Internal("version out of range"))
}

/// The patient's stored content; another clinic's patient is `None`, like a missing one.
pub async fn patient_record(
    tx: &mut ClinicTx,
    patient_id: Uuid,
) -> Result<Option<StoredRecord>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query("SELECT version, record FROM patients WHERE id = $1 AND clinic_id = $2")
        .bind(patient_id.to_string())
        .bind(clinic)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        Ok(StoredRecord {
            version: version_of(row.get(0))?,
            body: row.get(1),
        })
    })
    .transpose()
}

/// Stores a new patient at version 1, with no clinical content yet.
pub async fn insert_patient_record(
    tx: &mut ClinicTx,
    patient_id: Uuid,
    body: &str,
    derived: &Derived<'_>,
    import_key: Option<&str>,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, allergies, problems,
             medications, record, version, given_key, family_key, import_key, phone_key)
         VALUES ($1, $2, $3, $4, $5, $6, '[]', '[]', '[]', $7, 1, $8, $9, $10, $11)",
    )
    .bind(patient_id.to_string())
    .bind(clinic)
    .bind(derived.name)
    .bind(derived.birth_date)
    .bind(derived.mrn)
    .bind(derived.phone)
    .bind(body)
    .bind(search_key(derived.given))
    .bind(search_key(derived.family))
    .bind(import_key)
    .bind(phone_key(derived.phone))
    .execute(&mut **tx)
    .await
    // Under the clinic's lock, its own ids, record numbers and import keys were looked up
    // first: what clashes here is an id a workstation chose that another clinic's patient
    // holds (which this clinic cannot see).
    .map_err(conflict_if_unique("id"))?;
    Ok(())
}

/// A new patient's row as an import's batch stores it: its content, the columns derived
/// from it, its source record and its SSN's blind indexes ('' for none).
pub struct NewPatientRow<'a> {
    pub id: Uuid,
    pub body: &'a str,
    pub derived: Derived<'a>,
    pub import_key: &'a str,
    pub ssn_index: &'a str,
    pub ssn_last4_index: &'a str,
    pub ssn_index_key: u32,
}

/// The multi-row INSERTs of an import batch's new patients, at version 1 (the caller has
/// looked up, under the clinic's lock, that their record numbers and source keys are free).
pub(crate) fn insert_patient_rows(
    tx: &ClinicTx,
    rows: &[NewPatientRow<'_>],
) -> Vec<sql::Statement> {
    let clinic = tx.clinic_id().to_string();
    let values = rows
        .iter()
        .map(|r| {
            let d = &r.derived;
            vec![
                sql::Value::from(r.id.to_string()),
                clinic.as_str().into(),
                d.name.into(),
                d.birth_date.into(),
                d.mrn.into(),
                d.phone.into(),
                r.body.into(),
                search_key(d.given).into(),
                search_key(d.family).into(),
                r.import_key.into(),
                phone_key(d.phone).into(),
                r.ssn_index.into(),
                r.ssn_last4_index.into(),
                i64::from(r.ssn_index_key).into(),
                // The legacy lists, empty, and the first version.
                "[]".into(),
                "[]".into(),
                "[]".into(),
                1_i64.into(),
            ]
        })
        .collect();
    sql::insert_rows(
        "INSERT INTO patients (id, clinic_id, name, birth_date, mrn, phone, record, given_key,
             family_key, import_key, phone_key, ssn_index, ssn_last4_index, ssn_index_key,
             allergies, problems, medications, version)
         VALUES ",
        "",
        values,
    )
}

/// Of `import_keys`, those the clinic's patients were imported from, with the patient's id.
pub async fn imported_of(
    tx: &mut ClinicTx,
    import_keys: &[&str],
) -> Result<std::collections::HashMap<String, Uuid>, ServerError> {
    let mut found = std::collections::HashMap::new();
    for keys in import_keys.chunks(500) {
        let mut q = sql::Statement::new("SELECT import_key, id FROM patients WHERE clinic_id = ");
        q.bind(tx.clinic_id().to_string())
            .push(" AND import_key IN (");
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(*key);
        }
        q.push(")");
        let backend = Backend::of(tx);
        for row in q.query_for(backend).fetch_all(&mut **tx).await? {
            found.insert(
                row.get::<String, _>(0),
                parse_uuid(&row.get::<String, _>(1))?,
            );
        }
    }
    Ok(found)
}

/// The clinic's record numbers from `first` to `last` (as text, so any number on file that
/// sorts between them), for handing out the free ones in between.
pub async fn mrns_between(
    tx: &mut ClinicTx,
    first: &str,
    last: &str,
) -> Result<std::collections::HashSet<String>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    // `mrn <> ''` stated, so the partial record-number index serves it.
    let taken: Vec<String> = sqlx::query_scalar(
        "SELECT mrn FROM patients
         WHERE clinic_id = $1 AND mrn >= $2 AND mrn <= $3 AND mrn <> ''",
    )
    .bind(clinic)
    .bind(first)
    .bind(last)
    .fetch_all(&mut **tx)
    .await?;
    Ok(taken.into_iter().collect())
}

/// The patient imported from the source record `import_key`, if there is one.
pub async fn imported(tx: &mut ClinicTx, import_key: &str) -> Result<Option<Uuid>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let id: Option<String> =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 AND import_key = $2")
            .bind(clinic)
            .bind(import_key)
            .fetch_optional(&mut **tx)
            .await?;
    id.as_deref().map(parse_uuid).transpose()
}

/// Replaces the patient's content if it is still at `based_on`; `false` if another write
/// got there first (the caller holds the clinic's lock, so that is a stale caller).
pub async fn update_patient_record(
    tx: &mut ClinicTx,
    patient_id: Uuid,
    based_on: u64,
    body: &str,
    derived: &Derived<'_>,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE patients SET record = $1, version = version + 1, name = $2, birth_date = $3,
             mrn = $4, phone = $5, given_key = $9, family_key = $10, phone_key = $11
         WHERE id = $6 AND clinic_id = $7 AND version = $8",
    )
    .bind(body)
    .bind(derived.name)
    .bind(derived.birth_date)
    .bind(derived.mrn)
    .bind(derived.phone)
    .bind(patient_id.to_string())
    .bind(clinic)
    .bind(db_version(based_on)?)
    .bind(search_key(derived.given))
    .bind(search_key(derived.family))
    .bind(phone_key(derived.phone))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A phone number as its search column holds it, and as a search or the duplicate check
/// compares it: its digits, whatever separators were typed.
pub fn phone_key(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// A name part as the search columns hold it, and as a search's prefix is compared.
pub fn search_key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// The end of the range of keys that start with `prefix` (byte order on both stores).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// What an as-you-type search looks for.
pub enum Search<'a> {
    /// The start of a family or given name (one word), or of given and family name in
    /// either order (two words). Lower-cased with [`search_key`].
    Name(&'a str, Option<&'a str>),
    /// Exactly this birth date (`YYYY-MM-DD`).
    BirthDate(&'a str),
    /// The start of a record number, or of a phone number (compared by its digits).
    Number(&'a str),
}

/// A search by the start of a record number or a phone number's digits (`mrn <> ''`: see
/// [`MRN_TAKEN`]).
/// One kind of match of a search: its condition (binds from `$2`), the order its index
/// reads it in, and the two keys that order is by.
struct Part {
    condition: &'static str,
    order: &'static str,
    keys: (&'static str, &'static str),
}

const FAMILY_STARTS: &str = "family_key >= $2 AND family_key < $3";
const NUMBER_STARTS: &str = "mrn >= $2 AND mrn < $3 AND mrn <> ''";

/// The kinds of match `search` looks for, in the order a page shows them, and their binds.
fn parts(search: &Search<'_>) -> (Vec<Part>, Vec<String>) {
    let by_name = |condition| Part {
        condition,
        order: "family_key, given_key, id",
        keys: ("family_key", "given_key"),
    };
    match search {
        // Family names that start so, then given names that do.
        Search::Name(word, None) => (
            vec![
                by_name(FAMILY_STARTS),
                Part {
                    condition: "given_key >= $2 AND given_key < $3 AND NOT (family_key >= $2 AND family_key < $3)",
                    order: "given_key, family_key, id",
                    keys: ("given_key", "family_key"),
                },
            ],
            vec![(*word).to_owned(), prefix_end(word)],
        ),
        // Given then family name, then family then given.
        Search::Name(first, Some(second)) => (
            vec![
                by_name(
                    "family_key >= $4 AND family_key < $5 AND given_key >= $2 AND given_key < $3",
                ),
                by_name(
                    "family_key >= $2 AND family_key < $3 AND given_key >= $4 AND given_key < $5
                     AND NOT (family_key >= $4 AND family_key < $5
                              AND given_key >= $2 AND given_key < $3)",
                ),
            ],
            vec![
                (*first).to_owned(),
                prefix_end(first),
                (*second).to_owned(),
                prefix_end(second),
            ],
        ),
        Search::BirthDate(date) => (vec![by_name("birth_date = $2")], vec![(*date).to_owned()]),
        // Record numbers that start so, then phone numbers (by their digits). Without a digit
        // the phone side matches nothing (an empty key would match every row). `mrn <> ''`
        // stated, so the partial record-number index serves it.
        Search::Number(typed) => {
            let digits = phone_key(typed);
            let phone_end = if digits.is_empty() {
                String::new()
            } else {
                prefix_end(&digits)
            };
            (
                vec![
                    Part {
                        condition: NUMBER_STARTS,
                        order: "mrn",
                        keys: ("mrn", "''"),
                    },
                    Part {
                        condition: "phone_key >= $4 AND phone_key < $5
                             AND NOT (mrn >= $2 AND mrn < $3 AND mrn <> '')",
                        order: "phone_key, id",
                        keys: ("phone_key", "''"),
                    },
                ],
                vec![(*typed).to_owned(), prefix_end(typed), digits, phone_end],
            )
        }
    }
}

/// A search page's statement: each kind of match read in its index's order and only as far
/// as the page reaches (`$n` of each, n the page's end), then the page cut from them. (One
/// condition `a OR b` sorted by name read every match first: 200 ms for a two-letter name in
/// a clinic of 100,000.) Binds: the clinic, the parts' binds, then n, limit and offset.
fn search_sql(parts: &[Part], binds: usize) -> String {
    let reach = binds + 2;
    let selects: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "SELECT * FROM (SELECT {i} AS part, {} AS k1, {} AS k2, id, version, record
                 FROM patients WHERE clinic_id = $1 AND {} ORDER BY {} LIMIT ${reach}) p{i}",
                p.keys.0, p.keys.1, p.condition, p.order
            )
        })
        .collect();
    format!(
        "SELECT id, version, record FROM ({}) m ORDER BY part, k1, k2, id LIMIT ${} OFFSET ${}",
        selects.join(" UNION ALL "),
        reach + 1,
        reach + 2
    )
}

/// One page of the clinic's patients matching `search` (see [`parts`] for the order): each
/// one's id, version and stored content.
pub async fn search(
    tx: &mut ClinicTx,
    search: &Search<'_>,
    limit: u32,
    offset: u32,
) -> Result<Vec<(Uuid, StoredRecord)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let (parts, binds) = parts(search);
    let sql = search_sql(&parts, binds.len());
    // Safe: the statement is the fixed fragments above; every value is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(clinic);
    for b in binds {
        query = query.bind(b);
    }
    let rows = query
        .bind(i64::from(offset) + i64::from(limit))
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(id_and_record).collect()
}

/// A row of `id, version, record` of `patients`.
pub(super) fn id_and_record(row: &AnyRow) -> Result<(Uuid, StoredRecord), ServerError> {
    Ok((
        parse_uuid(&row.get::<String, _>(0))?,
        StoredRecord {
            version: version_of(row.get(1))?,
            body: row.get(2),
        },
    ))
}

/// Patients of the clinic already on file that a new registration may be: the same name
/// (ignoring case) and birth date, or the same phone number (by its digits). At most ten, by
/// id.
pub async fn possible_duplicates(
    tx: &mut ClinicTx,
    name: &str,
    birth_date: &str,
    phone: &str,
) -> Result<Vec<Uuid>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM patients
         WHERE clinic_id = $1
           AND ((lower(name) = lower($2) AND birth_date = $3) OR ($4 <> '' AND phone_key = $4))
         ORDER BY id LIMIT 10",
    )
    .bind(clinic)
    .bind(name)
    .bind(birth_date)
    .bind(phone_key(phone))
    .fetch_all(&mut **tx)
    .await?;
    ids.iter().map(|s| parse_uuid(s)).collect()
}

/// Whether the clinic already has a patient with this record number.
/// Whether a record number is taken in the clinic. The record-number index is partial
/// (`WHERE mrn <> ''`): a query uses it only if it says so itself.
const MRN_TAKEN: &str = "SELECT 1 FROM patients WHERE clinic_id = $1 AND mrn = $2 AND mrn <> ''";

pub async fn mrn_taken(tx: &mut ClinicTx, mrn: &str) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let found: Option<i64> = sqlx::query_scalar(MRN_TAKEN)
        .bind(clinic)
        .bind(mrn)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// How many patients the clinic has (the start of the next record number).
pub async fn patient_count(tx: &mut ClinicTx) -> Result<u64, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients WHERE clinic_id = $1")
        .bind(clinic)
        .fetch_one(&mut **tx)
        .await?;
    version_of(n)
}

/// Appends one version to the history.
pub async fn insert_version(tx: &mut ClinicTx, row: &VersionRow) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    let changed = serde_json::to_string(&row.changed_fields)
        .map_err(|_| ServerError::Internal("field names not encodable"))?;
    sqlx::query(
        "INSERT INTO record_versions (clinic_id, resource_type, record_id, version, patient_id,
             body, changed_fields, actor_user_id, actor_role, device_id, recorded_at_ms, reason,
             audit_event_id, change_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(clinic)
    .bind(&row.resource_type)
    .bind(row.record_id.to_string())
    .bind(db_version(row.version)?)
    .bind(row.patient_id.map(|p| p.to_string()))
    .bind(&row.body)
    .bind(changed)
    .bind(row.actor_user_id.to_string())
    .bind(row.actor_role.as_str())
    .bind(row.device_id.map(|d| d.to_string()))
    .bind(row.recorded_at_ms)
    .bind(&row.reason)
    .bind(row.audit_event_id.to_string())
    .bind(row.change_id.map(|c| c.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The multi-row INSERTs of many versions (an import batch's first versions).
pub(crate) fn insert_version_rows(
    tx: &ClinicTx,
    rows: &[VersionRow],
) -> Result<Vec<sql::Statement>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        let changed = serde_json::to_string(&row.changed_fields)
            .map_err(|_| ServerError::Internal("field names not encodable"))?;
        values.push(vec![
            sql::Value::from(clinic.as_str()),
            row.resource_type.as_str().into(),
            row.record_id.to_string().into(),
            db_version(row.version)?.into(),
            sql::Value::OptText(row.patient_id.map(|p| p.to_string())),
            row.body.as_str().into(),
            changed.into(),
            row.actor_user_id.to_string().into(),
            row.actor_role.as_str().into(),
            sql::Value::OptText(row.device_id.map(|d| d.to_string())),
            row.recorded_at_ms.into(),
            row.reason.as_str().into(),
            row.audit_event_id.to_string().into(),
            sql::Value::OptText(row.change_id.map(|c| c.to_string())),
        ]);
    }
    Ok(sql::insert_rows(
        "INSERT INTO record_versions (clinic_id, resource_type, record_id, version, patient_id,
             body, changed_fields, actor_user_id, actor_role, device_id, recorded_at_ms, reason,
             audit_event_id, change_id)
         VALUES ",
        "",
        values,
    ))
}

fn version_row(row: &AnyRow) -> Result<VersionRow, ServerError> {
    let opt_uuid = |i: usize| -> Result<Option<Uuid>, ServerError> {
        row.get::<Option<String>, _>(i)
            .as_deref()
            .map(parse_uuid)
            .transpose()
    };
    let changed: String = row.get(5);
    Ok(VersionRow {
        resource_type: row.get(0),
        record_id: parse_uuid(&row.get::<String, _>(1))?,
        version: version_of(row.get(2))?,
        patient_id: opt_uuid(3)?,
        body: row.get(4),
        changed_fields: serde_json::from_str(&changed)
            .map_err(|_| ServerError::Internal("stored field names malformed"))?,
        actor_user_id: parse_uuid(&row.get::<String, _>(6))?,
        actor_role: Role::parse(&row.get::<String, _>(7))
            .ok_or(ServerError::Internal("stored role unknown"))?,
        device_id: opt_uuid(8)?,
        recorded_at_ms: row.get(9),
        reason: row.get(10),
        audit_event_id: parse_uuid(&row.get::<String, _>(11))?,
        change_id: opt_uuid(12)?,
    })
}

/// A record's versions, oldest first.
pub async fn versions(
    tx: &mut ClinicTx,
    resource_type: &str,
    record_id: Uuid,
) -> Result<Vec<VersionRow>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT resource_type, record_id, version, patient_id, body, changed_fields,
             actor_user_id, actor_role, device_id, recorded_at_ms, reason, audit_event_id,
             change_id
         FROM record_versions
         WHERE clinic_id = $1 AND resource_type = $2 AND record_id = $3 ORDER BY version",
    )
    .bind(clinic)
    .bind(resource_type)
    .bind(record_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(version_row).collect()
}

/// The version the change `change_id` stored in the clinic, if any: its resource type,
/// record, version and writer.
pub async fn version_by_change(
    tx: &mut ClinicTx,
    change_id: Uuid,
) -> Result<Option<(String, Uuid, u64, Uuid)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT resource_type, record_id, version, actor_user_id FROM record_versions
         WHERE clinic_id = $1 AND change_id = $2",
    )
    .bind(clinic)
    .bind(change_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok((
            r.get::<String, _>(0),
            parse_uuid(&r.get::<String, _>(1))?,
            version_of(r.get(2))?,
            parse_uuid(&r.get::<String, _>(3))?,
        ))
    })
    .transpose()
}

/// One stored version as `audit verify` reads it: each column as text or number, whatever
/// it holds, so a row an insider mangled is a finding and not a stop.
pub struct VersionAsStored {
    pub resource_type: Option<String>,
    pub record_id: Option<String>,
    pub version: Option<i64>,
    pub patient_id: Option<String>,
    pub body: Option<String>,
    pub audit_event_id: Option<String>,
}

/// A record's current content (a patient's, an appointment's) as `audit verify` reads it.
pub struct CurrentAsStored {
    pub resource_type: &'static str,
    pub id: Option<String>,
    pub version: Option<i64>,
    pub record: Option<String>,
}

/// A patient's content and the columns derived from it, as `audit verify` reads them: each
/// as text whatever it holds (`None`: not readable as text).
pub struct PatientColumns {
    pub id: String,
    pub record: Option<String>,
    /// (column, value) for `name`, `birth_date`, `phone`, `phone_key`, `mrn`, `given_key`,
    /// `family_key`, `ssn_index`, `ssn_last4_index`.
    pub derived: Vec<(&'static str, Option<String>)>,
    /// The index key the SSN's indexes claim to be made by (0 if unreadable: no such key).
    pub ssn_index_key: u32,
}

/// Every patient of the clinic with its derived columns, for `audit verify`.
pub async fn patient_columns(tx: &mut ClinicTx) -> Result<Vec<PatientColumns>, ServerError> {
    const DERIVED: [&str; 9] = [
        "name",
        "birth_date",
        "phone",
        "phone_key",
        "mrn",
        "given_key",
        "family_key",
        "ssn_index",
        "ssn_last4_index",
    ];
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, record, name, birth_date, phone, phone_key, mrn, given_key, family_key,
             ssn_index, ssn_last4_index, ssn_index_key
         FROM patients WHERE clinic_id = $1 ORDER BY id",
    )
    .bind(clinic)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|r| PatientColumns {
            id: r.try_get(0).unwrap_or_default(),
            record: r.try_get(1).ok(),
            derived: DERIVED
                .iter()
                .enumerate()
                .map(|(i, name)| (*name, r.try_get(i + 2).ok()))
                .collect(),
            ssn_index_key: r
                .try_get::<i64, _>(DERIVED.len() + 2)
                .ok()
                .and_then(|k| u32::try_from(k).ok())
                .unwrap_or(0),
        })
        .collect())
}

/// Every stored version of the clinic's records, and every patient's current content, for
/// `audit verify`.
pub async fn record_versions_as_stored(
    tx: &mut ClinicTx,
) -> Result<(Vec<VersionAsStored>, Vec<CurrentAsStored>), ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT resource_type, record_id, version, patient_id, body, audit_event_id
         FROM record_versions WHERE clinic_id = $1 ORDER BY resource_type, record_id, version",
    )
    .bind(&clinic)
    .fetch_all(&mut **tx)
    .await?;
    let versions = rows
        .iter()
        .map(|r| VersionAsStored {
            resource_type: r.try_get(0).ok(),
            record_id: r.try_get(1).ok(),
            version: r.try_get(2).ok(),
            patient_id: r.try_get::<Option<String>, _>(3).ok().flatten(),
            body: r.try_get(4).ok(),
            audit_event_id: r.try_get(5).ok(),
        })
        .collect();
    let mut current = Vec::new();
    for (resource_type, sql) in [
        (
            "Patient",
            "SELECT id, version, record FROM patients WHERE clinic_id = $1",
        ),
        (
            "Appointment",
            "SELECT id, version, record FROM appointments WHERE clinic_id = $1",
        ),
        (
            "Coverage",
            "SELECT id, version, record FROM coverages WHERE clinic_id = $1",
        ),
        (
            "Practitioner",
            "SELECT id, version, record FROM practitioner_directory WHERE clinic_id = $1",
        ),
    ] {
        let rows = sqlx::query(sql).bind(&clinic).fetch_all(&mut **tx).await?;
        current.extend(rows.iter().map(|r| CurrentAsStored {
            resource_type,
            id: r.try_get(0).ok(),
            version: r.try_get(1).ok(),
            record: r.try_get(2).ok(),
        }));
    }
    Ok((versions, current))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{DatabaseKey, StoreLocation};

    /// How SQLite runs `sql` (with every parameter bound) on the real schema.
    async fn plan(store: &Store, sql: &str) -> String {
        let params = sql.matches('$').count();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..params {
            q = q.bind("x");
        }
        let rows = q.fetch_all(&store.pool).await.unwrap();
        rows.iter()
            .map(|r| r.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The record-number index is partial (`WHERE mrn <> ''`): SQLite uses it only for a
    /// query that states that term, since it cannot prove it of a bound value. Without it,
    /// the record-number lookup of every registration and import, and every search by
    /// number, read all of the clinic's patients: measured, an import of 5,000 patients
    /// ran at 33 a second, each slower than the last.
    #[tokio::test]
    async fn record_number_lookups_use_the_record_number_index() {
        let dir = tempfile::tempdir().unwrap();
        let key = DatabaseKey::from_bytes(zeroize::Zeroizing::new([1; 32]));
        let store = Store::open(&StoreLocation::in_data_dir(dir.path(), key))
            .await
            .unwrap();
        let taken = plan(&store, MRN_TAKEN).await;
        assert!(taken.contains("patients_clinic_mrn"), "{taken}");
        let (parts, binds) = parts(&Search::Number("123"));
        let search = plan(&store, &search_sql(&parts, binds.len())).await;
        assert!(
            search.contains("patients_clinic_mrn") && search.contains("patients_by_phone_key"),
            "{search}"
        );
        store.close().await;
    }

    /// Each kind of match a search looks for is a range of its index, read in order, so a
    /// page stops after a page's worth of rows and only the page is sorted. (A name search
    /// was one `family OR given` condition sorted by name: its plan walked the clinic's whole
    /// family index, `patients_by_family (clinic_id=?)`, until a page of matches turned up,
    /// with a sort for the id: 200 ms p99 in a clinic of 100,000, `patient_search_p99_ms`.)
    #[tokio::test]
    async fn searches_read_each_kind_of_match_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let key = DatabaseKey::from_bytes(zeroize::Zeroizing::new([1; 32]));
        let store = Store::open(&StoreLocation::in_data_dir(dir.path(), key))
            .await
            .unwrap();
        // Each kind of match a range of its index, read in order.
        let family = "patients_by_family (clinic_id=? AND family_key>? AND family_key<?)";
        let given = "patients_by_given (clinic_id=? AND given_key>? AND given_key<?)";
        let mrn = "patients_clinic_mrn (clinic_id=? AND mrn>? AND mrn<?)";
        let phone = "patients_by_phone_key (clinic_id=? AND phone_key>? AND phone_key<?)";
        for (search, ranges) in [
            (Search::Name("ka", None), &[family, given][..]),
            (Search::Name("ka", Some("lo")), &[family][..]),
            (Search::Number("555"), &[mrn, phone][..]),
        ] {
            let (parts, binds) = parts(&search);
            let plan = plan(&store, &search_sql(&parts, binds.len())).await;
            for range in ranges {
                assert!(plan.contains(range), "{plan}");
            }
            // One sort: the page's, of at most a page per kind of match.
            assert_eq!(plan.matches("TEMP B-TREE").count(), 1, "{plan}");
        }
        store.close().await;
    }
}
