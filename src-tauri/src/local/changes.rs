//! The user's queue of changes for the server, inside their encrypted cache: every change
//! made in the app (a registration, a booking, a check-in) is queued here first, together
//! with its effect on the cached copy, and the sender (`core::session::changes`) replays
//! the queue in order. A change leaves the queue only when the server stored it, or when
//! the user discards one the server refused; it survives lock, restart and a kill at any
//! instant, because it is a row of a committed SQLite transaction.

use clinicdesk_protocol::app::{ChangeKind, ChangeState};
use clinicdesk_protocol::wire::{
    AppointmentUpdate, CoverageChange, NewAppointment, PatientRegistration, PatientUpdate,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::db::DbError;

pub const MIGRATION: &str = "
-- Changes made in the app, oldest first, until the server stores them (or the user
-- discards one the server refused). `body` is the change (JSON); `state` where it stands.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    body TEXT NOT NULL,
    made_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL
);
";

/// A change as the server takes it: the request, with the record's id chosen here for a new
/// one (so later changes made offline can name it) and the version an update is based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    RegisterPatient {
        id: Uuid,
        registration: PatientRegistration,
    },
    UpdatePatient {
        id: Uuid,
        based_on: u64,
        update: PatientUpdate,
    },
    Book {
        id: Uuid,
        booking: NewAppointment,
    },
    ChangeAppointment {
        id: Uuid,
        patient_id: Uuid,
        based_on: u64,
        update: AppointmentUpdate,
    },
    /// A new coverage; `id` names it here only (the server gives it its own).
    AddCoverage {
        id: Uuid,
        patient_id: Uuid,
        coverage: CoverageChange,
    },
    UpdateCoverage {
        id: Uuid,
        patient_id: Uuid,
        based_on: u64,
        coverage: CoverageChange,
    },
}

impl Change {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::RegisterPatient { .. } => ChangeKind::RegisterPatient,
            Change::UpdatePatient { .. } => ChangeKind::UpdatePatient,
            Change::Book { .. } => ChangeKind::Book,
            Change::ChangeAppointment { .. } => ChangeKind::ChangeAppointment,
            Change::AddCoverage { .. } => ChangeKind::AddCoverage,
            Change::UpdateCoverage { .. } => ChangeKind::UpdateCoverage,
        }
    }

    /// The record it creates or changes.
    pub fn record_id(&self) -> Uuid {
        match self {
            Change::RegisterPatient { id, .. }
            | Change::UpdatePatient { id, .. }
            | Change::Book { id, .. }
            | Change::ChangeAppointment { id, .. }
            | Change::AddCoverage { id, .. }
            | Change::UpdateCoverage { id, .. } => *id,
        }
    }

    /// Whose record it is.
    pub fn patient_id(&self) -> Uuid {
        match self {
            Change::RegisterPatient { id, .. } | Change::UpdatePatient { id, .. } => *id,
            Change::Book { booking, .. } => booking.fields.patient_id.unwrap_or_default(),
            Change::ChangeAppointment { patient_id, .. }
            | Change::AddCoverage { patient_id, .. }
            | Change::UpdateCoverage { patient_id, .. } => *patient_id,
        }
    }

    /// The names of the fields it sets.
    pub fn fields(&self) -> Vec<String> {
        let names = match self {
            Change::RegisterPatient { registration, .. } => registration.fields.present(),
            Change::UpdatePatient { update, .. } => update.fields.present(),
            Change::Book { booking, .. } => booking.fields.present(),
            Change::ChangeAppointment { update, .. } => update.fields.present(),
            Change::AddCoverage { coverage, .. } | Change::UpdateCoverage { coverage, .. } => {
                coverage.fields.present()
            }
        };
        names.into_iter().map(str::to_owned).collect()
    }

    fn kind_name(&self) -> &'static str {
        match self.kind() {
            ChangeKind::RegisterPatient => "register_patient",
            ChangeKind::UpdatePatient => "update_patient",
            ChangeKind::Book => "book",
            ChangeKind::ChangeAppointment => "change_appointment",
            ChangeKind::AddCoverage => "add_coverage",
            ChangeKind::UpdateCoverage => "update_coverage",
        }
    }
}

/// One change in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub change_id: Uuid,
    pub change: Change,
    pub made_at_ms: i64,
    pub state: ChangeState,
}

fn json<T: Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|_| DbError::Malformed)
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|_| DbError::Malformed)
}

/// Adds `change` at the end of the queue, waiting.
pub fn enqueue(
    tx: &Transaction<'_>,
    change_id: Uuid,
    change: &Change,
    made_at_ms: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO changes (change_id, kind, record_id, patient_id, fields, body, made_at_ms,
             state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            change_id.to_string(),
            change.kind_name(),
            change.record_id().to_string(),
            change.patient_id().to_string(),
            json(&change.fields())?,
            json(change)?,
            made_at_ms,
            json(&ChangeState::Waiting)?,
        ],
    )?;
    Ok(())
}

fn queued(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode((id, body, made_at_ms, state): (String, String, i64, String)) -> Result<Queued, DbError> {
    Ok(Queued {
        change_id: Uuid::parse_str(&id).map_err(|_| DbError::Malformed)?,
        change: parse(&body)?,
        made_at_ms,
        state: parse(&state)?,
    })
}

/// Every change in the queue, oldest first.
pub fn all(conn: &Connection) -> Result<Vec<Queued>, DbError> {
    let mut stmt =
        conn.prepare("SELECT change_id, body, made_at_ms, state FROM changes ORDER BY seq")?;
    let rows = stmt
        .query_map([], queued)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode).collect()
}

pub fn get(conn: &Connection, change_id: Uuid) -> Result<Option<Queued>, DbError> {
    conn.query_row(
        "SELECT change_id, body, made_at_ms, state FROM changes WHERE change_id = ?1",
        [change_id.to_string()],
        queued,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// How many changes the queue holds, whatever their state.
pub fn count(conn: &Connection) -> Result<u64, DbError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| DbError::Malformed)
}

pub fn set_state(conn: &Connection, change_id: Uuid, state: &ChangeState) -> Result<(), DbError> {
    conn.execute(
        "UPDATE changes SET state = ?2 WHERE change_id = ?1",
        params![change_id.to_string(), json(state)?],
    )?;
    Ok(())
}

/// Replaces a change (rebased on the server's version, or confirmed as a new person) and
/// sets it waiting again, in its place in the queue.
pub fn replace(conn: &Connection, change_id: Uuid, change: &Change) -> Result<(), DbError> {
    conn.execute(
        "UPDATE changes SET body = ?2, fields = ?3, state = ?4 WHERE change_id = ?1",
        params![
            change_id.to_string(),
            json(change)?,
            json(&change.fields())?,
            json(&ChangeState::Waiting)?,
        ],
    )?;
    Ok(())
}

/// Takes a change out of the queue (the server stored it, or the user discarded it).
pub fn remove(conn: &Connection, change_id: Uuid) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM changes WHERE change_id = ?1",
        [change_id.to_string()],
    )?;
    Ok(())
}
