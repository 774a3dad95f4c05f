//! The audit chains as stored: `audit_events` rows (workstations' signed events and the
//! server's own), `audit_device_heads` (each workstation's upload progress), `audit_alerts`
//! (signed events the log refused, receipts of a rollback), and the `devices` row that names a clinic's server
//! chain. Which events to store, checked how and in what order, is `crate::audit`'s.

use clinicdesk_protocol::audit::{AuditEvent, Hash32, SignedAuditEvent};
use clinicdesk_protocol::wire::AuditReceipt;

use super::audit_log::stored_id;
use super::sql::{Script, Statement, Value, insert_rows};
use super::*;

fn seq_i64(seq: u64) -> Result<i64, ServerError> {
    i64::try_from(seq).map_err(|_| ServerError::BadRequest {
        field: "device_seq",
    })
}

fn parse_hash(s: &str) -> Result<Hash32, ServerError> {
    Hash32::from_hex(s).ok_or(ServerError::Internal("stored hash malformed"))
}

/// The `audit_events` row of a verified event, but for its place in the log: built before
/// the write turn, placed (given its leaf index) in it.
pub struct EventRow(Vec<Value>);

/// What became of an upload's writes ([`Store::write_upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// A row clashed with a stored one on a unique key: the transaction is to be dropped.
    Clashed,
}

/// What an alert keeps as its evidence.
pub enum Evidence<'a> {
    /// The event the log refused, as its device signed it.
    Event(&'a SignedAuditEvent),
    /// The receipt a workstation held for more than the server now holds (a `rollback`),
    /// as the server signed it ([`AuditReceipt::held`]).
    Receipt(&'a AuditReceipt),
}

impl Evidence<'_> {
    /// (device, sequence, JSON, signature) as the row keeps them.
    fn row(&self) -> Result<(Uuid, u64, String, &str), ServerError> {
        let malformed = |_| ServerError::Internal("alert evidence json");
        Ok(match self {
            Evidence::Event(signed) => (
                signed.event.device_id,
                signed.event.device_seq,
                serde_json::to_string(&signed.event).map_err(malformed)?,
                &signed.signature,
            ),
            Evidence::Receipt(receipt) => (
                receipt.device_id,
                receipt.highest_contiguous_seq,
                serde_json::to_string(receipt).map_err(malformed)?,
                &receipt.signature,
            ),
        })
    }
}

/// Evidence to keep as an alert of `kind` whose server event is `logged_event_id`.
pub struct Alert<'a> {
    pub evidence: Evidence<'a>,
    pub hash: &'a Hash32,
    pub kind: &'a str,
    pub received_at_ms: i64,
    pub logged_event_id: Uuid,
}

/// A workstation's upload progress: its highest contiguous sequence and that event's hash,
/// and the highest sequence stored.
#[derive(Debug, Clone, Copy)]
pub struct DeviceHead {
    pub contiguous_seq: u64,
    pub contiguous_hash: Hash32,
    pub max_seq: u64,
}

impl Store {
    /// The row of [`EventRow`].
    pub(crate) fn event_row(
        scope: &ClinicScope,
        signed: &SignedAuditEvent,
        hash: &Hash32,
        now_ms: i64,
    ) -> Result<EventRow, ServerError> {
        let e = &signed.event;
        let json = serde_json::to_string(e).map_err(|_| ServerError::Internal("event json"))?;
        Ok(EventRow(vec![
            Value::Text(e.id.to_string()),
            Value::Text(scope.clinic_id().to_string()),
            Value::Text(e.device_id.to_string()),
            Value::Int(seq_i64(e.device_seq)?),
            Value::Text(e.actor_user_id.to_string()),
            Value::OptText(e.patient_id.map(|p| p.to_string())),
            Value::from(e.action.as_str()),
            Value::Int(e.occurred_at_ms),
            Value::Text(json),
            Value::Text(hash.to_hex()),
            Value::Text(signed.signature.clone()),
            Value::Int(now_ms),
        ]))
    }

    /// The statements that store verified events, each at its leaf index, a hundred rows
    /// each.
    pub(crate) fn event_inserts(rows: impl IntoIterator<Item = (EventRow, i64)>) -> Vec<Statement> {
        let rows = rows
            .into_iter()
            .map(|(EventRow(mut row), leaf)| {
                row.push(Value::Int(leaf));
                row
            })
            .collect();
        insert_rows(
            "INSERT INTO audit_events (id, clinic_id, device_id, device_seq, actor_user_id, patient_id,
           action, occurred_at_ms, event_json, hash, signature, received_at_ms, leaf_index) VALUES ",
            "",
            rows,
        )
    }

    /// Runs an upload's writes in the caller's transaction; a clash on a unique key is an
    /// answer, not an error.
    pub(crate) async fn write_upload(
        conn: &mut AnyConnection,
        writes: Script,
    ) -> Result<Written, ServerError> {
        match writes.execute(conn).await {
            Ok(()) => Ok(Written::Stored),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(Written::Clashed),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored event at (device, seq): its hash and its `prev_hash`.
    pub async fn event_link(
        conn: &mut AnyConnection,
        device: Uuid,
        seq: u64,
    ) -> Result<Option<(Hash32, Hash32)>, ServerError> {
        let row = sqlx::query(
            "SELECT hash, event_json FROM audit_events WHERE device_id = $1 AND device_seq = $2",
        )
        .bind(device.to_string())
        .bind(seq_i64(seq)?)
        .fetch_optional(conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let event: AuditEvent = serde_json::from_str(row.get::<&str, _>(1))
            .map_err(|_| ServerError::Internal("stored event malformed"))?;
        Ok(Some((parse_hash(row.get::<&str, _>(0))?, event.prev_hash)))
    }

    /// The leaf index of the stored event at (device, seq); an error if there is none.
    pub async fn leaf_at(
        conn: &mut AnyConnection,
        device: Uuid,
        seq: u64,
    ) -> Result<Option<i64>, ServerError> {
        Ok(sqlx::query_scalar(
            "SELECT leaf_index FROM audit_events WHERE device_id = $1 AND device_seq = $2",
        )
        .bind(device.to_string())
        .bind(seq_i64(seq)?)
        .fetch_one(conn)
        .await?)
    }

    /// Whether the refused event (device, seq, hash) is kept as an alert already.
    pub async fn alert_stored(
        conn: &mut AnyConnection,
        device: Uuid,
        seq: u64,
        hash: &Hash32,
    ) -> Result<bool, ServerError> {
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM audit_alerts WHERE device_id = $1 AND device_seq = $2 AND hash = $3",
        )
        .bind(device.to_string())
        .bind(seq_i64(seq)?)
        .bind(hash.to_hex())
        .fetch_optional(conn)
        .await?;
        Ok(stored.is_some())
    }

    /// Keeps a refused event in `audit_alerts`, in the caller's transaction.
    pub async fn insert_alert(
        conn: &mut AnyConnection,
        scope: &ClinicScope,
        alert: Alert<'_>,
    ) -> Result<(), ServerError> {
        let (device_id, device_seq, json, signature) = alert.evidence.row()?;
        sqlx::query(
            "INSERT INTO audit_alerts (clinic_id, device_id, device_seq, kind, hash, event_json,
               signature, received_at_ms, logged_event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(scope.clinic_id().to_string())
        .bind(device_id.to_string())
        .bind(seq_i64(device_seq)?)
        .bind(alert.kind)
        .bind(alert.hash.to_hex())
        .bind(json)
        .bind(signature)
        .bind(alert.received_at_ms)
        .bind(alert.logged_event_id.to_string())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The device's stored head, if it has one.
    pub async fn device_head(
        conn: &mut AnyConnection,
        device: Uuid,
    ) -> Result<Option<DeviceHead>, ServerError> {
        let head = sqlx::query(
            "SELECT contiguous_seq, contiguous_hash, max_seq FROM audit_device_heads WHERE device_id = $1",
        )
        .bind(device.to_string())
        .fetch_optional(conn)
        .await?;
        head.map(|r| {
            Ok(DeviceHead {
                contiguous_seq: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
                contiguous_hash: parse_hash(r.get::<&str, _>(1))?,
                max_seq: u64::try_from(r.get::<i64, _>(2)).unwrap_or(u64::MAX),
            })
        })
        .transpose()
    }

    /// The device's stored contiguous mark (sequence, hash), if it has one.
    pub async fn contiguous_mark(
        conn: &mut AnyConnection,
        device: Uuid,
    ) -> Result<Option<(u64, Hash32)>, ServerError> {
        let head = sqlx::query(
            "SELECT contiguous_seq, contiguous_hash FROM audit_device_heads WHERE device_id = $1",
        )
        .bind(device.to_string())
        .fetch_optional(conn)
        .await?;
        head.map(|r| {
            Ok((
                u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
                parse_hash(r.get::<&str, _>(1))?,
            ))
        })
        .transpose()
    }

    /// The device's stored events after `seq`, as (sequence, hash), in sequence order.
    pub async fn events_after(
        conn: &mut AnyConnection,
        device: Uuid,
        seq: u64,
    ) -> Result<Vec<(u64, Hash32)>, ServerError> {
        let later = sqlx::query(
        "SELECT device_seq, hash FROM audit_events WHERE device_id = $1 AND device_seq > $2 ORDER BY device_seq",
    )
        .bind(device.to_string())
        .bind(seq_i64(seq)?)
        .fetch_all(conn)
        .await?;
        later
            .iter()
            .map(|row| {
                Ok((
                    u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
                    parse_hash(row.get::<&str, _>(1))?,
                ))
            })
            .collect()
    }

    /// Stores a chain's head: its highest contiguous sequence and that event's hash, and
    /// the highest sequence stored (which never goes down).
    pub async fn set_head(
        conn: &mut AnyConnection,
        scope: &ClinicScope,
        device: Uuid,
        head: (u64, Hash32),
        max_seq: u64,
    ) -> Result<(), ServerError> {
        Self::head_upsert(scope, device, head, max_seq)?
            .query()
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The statement of [`Store::set_head`].
    pub(crate) fn head_upsert(
        scope: &ClinicScope,
        device: Uuid,
        (seq, hash): (u64, Hash32),
        max_seq: u64,
    ) -> Result<Statement, ServerError> {
        let mut st = Statement::new(
            "INSERT INTO audit_device_heads (device_id, clinic_id, contiguous_seq, contiguous_hash, max_seq)
         VALUES (",
        );
        st.bind(device.to_string())
            .push(", ")
            .bind(scope.clinic_id().to_string())
            .push(", ")
            .bind(seq_i64(seq)?)
            .push(", ")
            .bind(hash.to_hex())
            .push(", ")
            .bind(seq_i64(max_seq)?)
            .push(
                ")
         ON CONFLICT (device_id) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,
           contiguous_hash = excluded.contiguous_hash, max_seq = CASE WHEN excluded.max_seq > audit_device_heads.max_seq
                          THEN excluded.max_seq ELSE audit_device_heads.max_seq END",
            );
        Ok(st)
    }

    /// The clinic's workstations (the chains whose upload progress is kept).
    pub async fn workstation_chains(
        conn: &mut AnyConnection,
        clinic: Uuid,
    ) -> Result<Vec<Uuid>, ServerError> {
        let workstations: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE clinic_id = $1 AND kind = 'workstation'",
        )
        .bind(clinic.to_string())
        .fetch_all(conn)
        .await?;
        workstations.iter().map(|d| stored_id(d)).collect()
    }

    /// The id of the clinic's server chain, if it has one.
    pub async fn server_chain(
        conn: &mut AnyConnection,
        scope: &ClinicScope,
    ) -> Result<Option<Uuid>, ServerError> {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM devices WHERE clinic_id = $1 AND kind = 'server'")
                .bind(scope.clinic_id().to_string())
                .fetch_optional(conn)
                .await?;
        existing.as_deref().map(stored_id).transpose()
    }

    /// Registers the clinic's server chain as `id`, in the caller's transaction.
    pub async fn create_server_chain(
        conn: &mut AnyConnection,
        scope: &ClinicScope,
        id: Uuid,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        let clinic = scope.clinic_id().to_string();
        sqlx::query(
            "INSERT INTO devices (id, clinic_id, name, public_key, enrolled_at_ms, kind)
         VALUES ($1, $2, 'ClinicDesk server', $3, $4, 'server')",
        )
        .bind(id.to_string())
        .bind(&clinic)
        .bind(format!("server:{clinic}"))
        .bind(now_ms)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The last event of a chain without gaps (the server's) as (sequence, hash), if any.
    pub async fn chain_end(
        conn: &mut AnyConnection,
        chain: Uuid,
    ) -> Result<Option<(u64, Hash32)>, ServerError> {
        let head = sqlx::query(
            "SELECT device_seq, hash FROM audit_events WHERE device_id = $1
         ORDER BY device_seq DESC LIMIT 1",
        )
        .bind(chain.to_string())
        .fetch_optional(conn)
        .await?;
        head.map(|r| {
            Ok((
                u64::try_from(r.get::<i64, _>(0))
                    .map_err(|_| ServerError::Internal("stored head malformed"))?,
                Hash32::from_hex(r.get::<&str, _>(1))
                    .ok_or(ServerError::Internal("stored head malformed"))?,
            ))
        })
        .transpose()
    }
}
