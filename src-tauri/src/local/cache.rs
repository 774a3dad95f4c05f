//! A user's offline cache: one SQLCipher database per user per workstation, holding the
//! records that user fetched and the policy needed to unlock it offline. Its key comes
//! from [`super::users`], unwrapped with the user's password; closing the connection
//! (dropping [`Cache`]) makes SQLCipher wipe its copy of the key.

use std::path::Path;

use clinicdesk_protocol::app::PatientHit;
use clinicdesk_protocol::wire::{
    Appointment, AppointmentList, ClinicalAccess, CoverageFields, CoverageList, CoverageRecord,
    Patient, PatientRecord, PractitionerList, UserInfo,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::db::{self, DbError};
use super::patient_search::PatientQuery;

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE appointments (
    day TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
-- Who this cache belongs to and the clinic policy that governs unlocking it offline.
CREATE TABLE meta (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    user_json TEXT NOT NULL,
    last_online_ms INTEGER NOT NULL,
    max_offline_secs INTEGER NOT NULL,
    idle_timeout_secs INTEGER NOT NULL
);
",
    "
-- The server's grant after this user's last second factor on this device: lets an unlock
-- within its lifetime (12 hours) sign in online with the password alone.
CREATE TABLE mfa_grant (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    token TEXT NOT NULL
);
",
    "
-- The latest time this cache has seen (sign-ins and unlocks): a clock set back behind it
-- cannot stretch the clinic's maximum offline time.
ALTER TABLE meta ADD COLUMN latest_seen_ms INTEGER NOT NULL DEFAULT 0;
",
    super::patient_search::MIGRATION,
    "
-- When the grant was earned, that is when this user last proved a second factor here
-- online: offline, the password alone unlocks only within the grant's 12 hours (0, for a
-- grant kept before this column: none counts until the next second factor).
ALTER TABLE mfa_grant ADD COLUMN granted_at_ms INTEGER NOT NULL DEFAULT 0;
",
    super::changes::MIGRATION,
    "
-- Who can be booked (the clinic's clinicians, by name: no PHI), for booking offline.
CREATE TABLE practitioners (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    json TEXT NOT NULL
);
-- Patients' registration records as last read (or changed here), with their version: what
-- an edit made offline is based on.
CREATE TABLE patient_records (
    id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
",
    "
-- Patients' coverages as last read (a list per patient), for the front desk and billing
-- offline.
CREATE TABLE coverages (
    patient_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    fetched_at_ms INTEGER NOT NULL
);
",
];

/// The JSON value in the first column of the row `sql` finds with `params`, decoded.
fn json_row<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>, DbError> {
    let json: Option<String> = conn.query_row(sql, params, |r| r.get(0)).optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|_| DbError::Malformed))
        .transpose()
}

/// What an offline unlock needs to know, as of the last contact with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub user: UserInfo,
    pub last_online_ms: i64,
    pub max_offline_secs: u64,
    pub idle_timeout_secs: u64,
}

pub struct Cache {
    conn: Connection,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache(<open>)")
    }
}

impl Cache {
    /// Opens or creates the cache at `path` with `key`. A wrong key is [`DbError::WrongKey`].
    pub fn open(path: &Path, key: &Zeroizing<[u8; 32]>) -> Result<Self, DbError> {
        Ok(Self {
            conn: db::open_encrypted(path, key, MIGRATIONS)?,
        })
    }

    /// Runs `f` in one transaction.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn meta(&self) -> Result<Option<Meta>, DbError> {
        let row: Option<(String, i64, i64, i64)> = self
            .conn
            .query_row(
                "SELECT user_json, last_online_ms, max_offline_secs, idle_timeout_secs
                 FROM meta WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(json, last, max_offline, idle)| {
            Ok(Meta {
                user: serde_json::from_str(&json).map_err(|_| DbError::Malformed)?,
                last_online_ms: last,
                max_offline_secs: u64::try_from(max_offline).map_err(|_| DbError::Malformed)?,
                idle_timeout_secs: u64::try_from(idle).map_err(|_| DbError::Malformed)?,
            })
        })
        .transpose()
    }

    /// Records a successful sign-in with the server: who, when, and the clinic's policy. A
    /// role other than the one the copy was made under deletes every record in it first
    /// (the new role may read less; what it may read comes back from the server). The
    /// queue of changes stays: the server judges each under the new role.
    pub fn put_meta(&mut self, meta: &Meta) -> Result<(), DbError> {
        let json = serde_json::to_string(&meta.user).map_err(|_| DbError::Malformed)?;
        if self
            .meta()?
            .is_some_and(|before| before.user.role != meta.user.role)
        {
            self.forget_records()?;
        }
        self.conn.execute(
            "INSERT INTO meta (one, user_json, last_online_ms, max_offline_secs, idle_timeout_secs)
             VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (one) DO UPDATE SET user_json = excluded.user_json,
                 last_online_ms = excluded.last_online_ms,
                 max_offline_secs = excluded.max_offline_secs,
                 idle_timeout_secs = excluded.idle_timeout_secs",
            params![
                json,
                meta.last_online_ms,
                i64::try_from(meta.max_offline_secs).unwrap_or(i64::MAX),
                i64::try_from(meta.idle_timeout_secs).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    /// How many patients and days the copy holds, and when a day was last fetched.
    pub fn holdings(&self) -> Result<(u64, u64, Option<i64>), DbError> {
        let count = |sql: &str| -> Result<u64, DbError> {
            let n: i64 = self.conn.query_row(sql, [], |r| r.get(0))?;
            u64::try_from(n).map_err(|_| DbError::Malformed)
        };
        let refreshed: Option<i64> =
            self.conn
                .query_row("SELECT max(fetched_at_ms) FROM appointments", [], |r| {
                    r.get(0)
                })?;
        Ok((
            count("SELECT count(*) FROM patients")?,
            count("SELECT count(*) FROM appointments")?,
            refreshed,
        ))
    }

    /// Deletes every cached record (days, charts, registration records, coverages, search
    /// keys).
    pub fn forget_records(&mut self) -> Result<(), DbError> {
        self.transaction(|tx| {
            tx.execute_batch(
                "DELETE FROM patient_name_words; DELETE FROM patients;
                 DELETE FROM patient_records; DELETE FROM appointments;
                 DELETE FROM coverages;",
            )?;
            Ok(())
        })
    }

    /// The latest time this cache has seen (0 before the first sign-in).
    pub fn latest_seen_ms(&self) -> Result<i64, DbError> {
        Ok(self
            .conn
            .query_row("SELECT latest_seen_ms FROM meta WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }

    /// Remembers `now_ms` if it is later than any time seen before.
    pub fn note_time(&mut self, now_ms: i64) -> Result<(), DbError> {
        self.conn.execute(
            "UPDATE meta SET latest_seen_ms = max(latest_seen_ms, ?1) WHERE one = 1",
            params![now_ms],
        )?;
        Ok(())
    }

    /// Keeps the grant a second factor earned at `now_ms` (inside this encrypted cache
    /// only).
    pub fn put_mfa_grant(&mut self, token: &str, now_ms: i64) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO mfa_grant (one, token, granted_at_ms) VALUES (1, ?1, ?2)
             ON CONFLICT (one) DO UPDATE
             SET token = excluded.token, granted_at_ms = excluded.granted_at_ms",
            params![token, now_ms],
        )?;
        Ok(())
    }

    /// When this user last proved a second factor here online (0: never, as far as this
    /// cache knows).
    pub fn second_factor_at_ms(&self) -> Result<i64, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT granted_at_ms FROM mfa_grant WHERE one = 1",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    pub fn mfa_grant(&self) -> Result<Option<Zeroizing<String>>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT token FROM mfa_grant WHERE one = 1", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .map(Zeroizing::new))
    }

    /// The most recently fetched schedule, whatever its day (for offline use).
    pub fn latest_appointments(&self) -> Result<Option<AppointmentList>, DbError> {
        json_row(
            &self.conn,
            "SELECT json FROM appointments ORDER BY fetched_at_ms DESC LIMIT 1",
            [],
        )
    }

    /// The schedule of `day` (`YYYY-MM-DD`, the clinic's), as last fetched or changed here.
    pub fn appointments_on(&self, day: &str) -> Result<Option<AppointmentList>, DbError> {
        json_row(
            &self.conn,
            "SELECT json FROM appointments WHERE day = ?1",
            [day],
        )
    }

    /// A patient's registration record as last read or changed here.
    /// The patient's coverages as last read here.
    pub fn coverages(&self, patient_id: Uuid) -> Result<Option<CoverageList>, DbError> {
        json_row(
            &self.conn,
            "SELECT json FROM coverages WHERE patient_id = ?1",
            [patient_id.to_string()],
        )
    }

    pub fn patient_record(&self, id: Uuid) -> Result<Option<PatientRecord>, DbError> {
        json_row(
            &self.conn,
            "SELECT json FROM patient_records WHERE id = ?1",
            [id.to_string()],
        )
    }

    /// The days whose schedule the copy holds.
    pub fn cached_days(&self) -> Result<Vec<String>, DbError> {
        days_held(&self.conn)
    }

    /// Who could be booked, as last fetched.
    pub fn practitioners(&self) -> Result<Option<PractitionerList>, DbError> {
        json_row(
            &self.conn,
            "SELECT json FROM practitioners WHERE one = 1",
            [],
        )
    }

    /// Cached patients matching what the user typed ([`super::patient_search`]).
    pub fn search_patients(&self, query: &PatientQuery) -> Result<Vec<PatientHit>, DbError> {
        super::patient_search::search(&self.conn, query)
    }

    pub fn cached_patient(&self, id: Uuid) -> Result<Option<Patient>, DbError> {
        patient_in(&self.conn, id)
    }
}

/// The server answered: offline time counts from now.
pub fn touch_online(tx: &Transaction<'_>, now_ms: i64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE meta SET last_online_ms = max(last_online_ms, ?1) WHERE one = 1",
        [now_ms],
    )?;
    Ok(())
}

pub fn put_appointments(
    tx: &Transaction<'_>,
    list: &AppointmentList,
    now_ms: i64,
) -> Result<(), DbError> {
    let json = serde_json::to_string(list).map_err(|_| DbError::Malformed)?;
    tx.execute(
        "INSERT INTO appointments (day, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (day) DO UPDATE SET json = excluded.json, fetched_at_ms = excluded.fetched_at_ms",
        params![list.date, json, now_ms],
    )?;
    Ok(())
}

/// Caches a patient as read. A chart read under a break-glass grant is cached without its
/// clinical summary: the grant lasts an hour and the cache outlives it, so offline the
/// clinician sees what their care team would, and breaking the glass again needs the server.
pub fn put_patient(tx: &Transaction<'_>, patient: &Patient, now_ms: i64) -> Result<(), DbError> {
    let json = if patient.break_glass.is_some() {
        let mut kept = patient.clone();
        kept.clinical = None;
        kept.clinical_access = ClinicalAccess::OutsideCareTeam;
        kept.break_glass = None;
        serde_json::to_string(&kept)
    } else {
        serde_json::to_string(patient)
    }
    .map_err(|_| DbError::Malformed)?;
    tx.execute(
        "INSERT INTO patients (id, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET json = excluded.json, fetched_at_ms = excluded.fetched_at_ms",
        params![patient.id.to_string(), json, now_ms],
    )?;
    super::patient_search::index(tx, patient)
}

pub fn put_practitioners(tx: &Transaction<'_>, list: &PractitionerList) -> Result<(), DbError> {
    let json = serde_json::to_string(list).map_err(|_| DbError::Malformed)?;
    tx.execute(
        "INSERT INTO practitioners (one, json) VALUES (1, ?1)
         ON CONFLICT (one) DO UPDATE SET json = excluded.json",
        [json],
    )?;
    Ok(())
}

/// The days whose schedule is cached.
fn days_held(conn: &Connection) -> Result<Vec<String>, DbError> {
    let days = conn
        .prepare("SELECT day FROM appointments")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(days)
}

/// Every cached day's schedule (the yesterday-to-a-week window a workstation keeps).
fn cached_lists(tx: &Transaction<'_>) -> Result<Vec<AppointmentList>, DbError> {
    let mut stmt = tx.prepare("SELECT json FROM appointments")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter()
        .map(|j| serde_json::from_str(j).map_err(|_| DbError::Malformed))
        .collect()
}

/// A booking made here: added to its day's cached schedule (`day` in `time_zone`, the
/// clinic's), so the day shows it before the server has it.
pub fn add_appointment(
    tx: &Transaction<'_>,
    day: &str,
    time_zone: &str,
    appointment: Appointment,
    now_ms: i64,
) -> Result<(), DbError> {
    let existing = json_row(tx, "SELECT json FROM appointments WHERE day = ?1", [day])?;
    let mut list = match existing {
        Some(list) => list,
        None => AppointmentList {
            date: day.to_owned(),
            time_zone: time_zone.to_owned(),
            appointments: Vec::new(),
        },
    };
    list.appointments.retain(|a| a.id != appointment.id);
    list.appointments.push(appointment);
    list.appointments
        .sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
    put_appointments(tx, &list, now_ms)
}

/// A change made here to a cached appointment, wherever its day is: `change` edits it in
/// place. Answers whether it was cached.
pub fn change_appointment(
    tx: &Transaction<'_>,
    id: Uuid,
    now_ms: i64,
    change: impl FnOnce(&mut Appointment),
) -> Result<bool, DbError> {
    for mut list in cached_lists(tx)? {
        if let Some(a) = list.appointments.iter_mut().find(|a| a.id == id) {
            change(a);
            put_appointments(tx, &list, now_ms)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cached appointment `id`, wherever its day is.
pub fn cached_appointment(tx: &Transaction<'_>, id: Uuid) -> Result<Option<Appointment>, DbError> {
    Ok(cached_lists(tx)?
        .into_iter()
        .flat_map(|l| l.appointments)
        .find(|a| a.id == id))
}

/// A patient registered here whose registration was discarded: out of the cache and its
/// search.
pub fn forget_patient(tx: &Transaction<'_>, id: Uuid) -> Result<(), DbError> {
    super::patient_search::forget(tx, id)?;
    tx.execute("DELETE FROM patients WHERE id = ?1", [id.to_string()])?;
    tx.execute(
        "DELETE FROM patient_records WHERE id = ?1",
        [id.to_string()],
    )?;
    tx.execute(
        "DELETE FROM coverages WHERE patient_id = ?1",
        [id.to_string()],
    )?;
    Ok(())
}

/// Keeps the patient's coverages as read now.
pub fn put_coverages(
    tx: &Transaction<'_>,
    list: &CoverageList,
    now_ms: i64,
) -> Result<(), DbError> {
    let json = serde_json::to_string(list).map_err(|_| DbError::Malformed)?;
    tx.execute(
        "INSERT INTO coverages (patient_id, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (patient_id) DO UPDATE SET json = excluded.json,
             fetched_at_ms = excluded.fetched_at_ms",
        params![list.patient_id.to_string(), json, now_ms],
    )?;
    Ok(())
}

/// The cached coverages of `patient_id`, read inside a transaction.
pub fn coverages_in(conn: &Connection, patient_id: Uuid) -> Result<Option<CoverageList>, DbError> {
    json_row(
        conn,
        "SELECT json FROM coverages WHERE patient_id = ?1",
        [patient_id.to_string()],
    )
}

/// A coverage added here, before the server has it: shown at once, at version 0 (the
/// server gives it an id and version 1 of its own, which the next read brings).
pub fn add_coverage(
    tx: &Transaction<'_>,
    added: CoverageRecord,
    now_ms: i64,
) -> Result<(), DbError> {
    let mut list = coverages_in(tx, added.patient_id)?.unwrap_or(CoverageList {
        patient_id: added.patient_id,
        coverages: Vec::new(),
    });
    list.coverages.retain(|c| c.id != added.id);
    list.coverages.push(added);
    put_coverages(tx, &list, now_ms)
}

/// A correction made here: applied to the cached coverage, at the version it will make.
pub fn change_coverage(
    tx: &Transaction<'_>,
    patient_id: Uuid,
    id: Uuid,
    change: &CoverageFields,
    version: u64,
    now_ms: i64,
) -> Result<(), DbError> {
    let Some(mut list) = coverages_in(tx, patient_id)? else {
        return Ok(());
    };
    if let Some(c) = list.coverages.iter_mut().find(|c| c.id == id) {
        c.fields.apply(change);
        c.version = version;
    }
    put_coverages(tx, &list, now_ms)
}

/// A coverage added here whose change was discarded: out of the cached list.
pub fn forget_coverage(
    tx: &Transaction<'_>,
    patient_id: Uuid,
    id: Uuid,
    now_ms: i64,
) -> Result<(), DbError> {
    let Some(mut list) = coverages_in(tx, patient_id)? else {
        return Ok(());
    };
    list.coverages.retain(|c| c.id != id);
    put_coverages(tx, &list, now_ms)
}

/// A booking made here that was discarded: out of its day's cached schedule.
pub fn forget_appointment(tx: &Transaction<'_>, id: Uuid, now_ms: i64) -> Result<(), DbError> {
    for mut list in cached_lists(tx)? {
        let before = list.appointments.len();
        list.appointments.retain(|a| a.id != id);
        if list.appointments.len() != before {
            put_appointments(tx, &list, now_ms)?;
        }
    }
    Ok(())
}

/// The cached patient `id`, read inside a transaction.
pub fn patient_in(conn: &Connection, id: Uuid) -> Result<Option<Patient>, DbError> {
    json_row(
        conn,
        "SELECT json FROM patients WHERE id = ?1",
        [id.to_string()],
    )
}

pub fn put_patient_record(
    tx: &Transaction<'_>,
    record: &PatientRecord,
    now_ms: i64,
) -> Result<(), DbError> {
    let json = serde_json::to_string(record).map_err(|_| DbError::Malformed)?;
    tx.execute(
        "INSERT INTO patient_records (id, json, fetched_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET json = excluded.json, fetched_at_ms = excluded.fetched_at_ms",
        params![record.id.to_string(), json, now_ms],
    )?;
    Ok(())
}

/// The cached registration record `id`, read inside a transaction.
pub fn patient_record_in(conn: &Connection, id: Uuid) -> Result<Option<PatientRecord>, DbError> {
    json_row(
        conn,
        "SELECT json FROM patient_records WHERE id = ?1",
        [id.to_string()],
    )
}

/// Keeps only the days in `days` and the patients in `keep` (their charts, records and
/// search keys): what left the user's window leaves the workstation.
pub fn evict_outside(
    tx: &Transaction<'_>,
    days: &[String],
    keep: &std::collections::BTreeSet<Uuid>,
) -> Result<(), DbError> {
    for day in days_held(tx)?.iter().filter(|d| !days.contains(d)) {
        tx.execute("DELETE FROM appointments WHERE day = ?1", [day])?;
    }
    let mut cached: Vec<String> = tx
        .prepare(
            "SELECT id FROM patients UNION SELECT id FROM patient_records
             UNION SELECT patient_id FROM coverages",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    cached.retain(|id| Uuid::parse_str(id).map_or(true, |id| !keep.contains(&id)));
    for id in cached {
        let id = Uuid::parse_str(&id).map_err(|_| DbError::Malformed)?;
        forget_patient(tx, id)?;
    }
    Ok(())
}
