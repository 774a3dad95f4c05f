//! Reading the audit trail: search newest first with a cursor, tamper alerts and
//! outstanding device sequences. Always within one clinic.

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Hash32};
use clinicdesk_protocol::wire::{
    AuditAlerts, AuditPage, AuditRecord, OutstandingRange, TamperAlert,
};
use serde::Deserialize;
use sqlx::{AnyPool, Row};

use crate::store::sql::Statement;
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Search filters; every one optional. Times are UTC milliseconds, `to_ms` exclusive.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// The first page of up to `limit` events matching `filters`.
    pub fn first_page(filters: &clinicdesk_protocol::export::ExportFilters, limit: u32) -> Self {
        Self {
            patient_id: filters.patient_id,
            user_id: filters.user_id,
            device_id: filters.device_id,
            action: filters.action,
            from_ms: filters.from_ms,
            to_ms: filters.to_ms,
            cursor: None,
            limit: Some(limit),
        }
    }
}

/// `cursor` is the (time, id) of the last event of the previous page.
fn parse_cursor(c: &str) -> Option<(i64, Uuid)> {
    let (ms, id) = c.split_once('.')?;
    Some((ms.parse().ok()?, Uuid::parse_str(id).ok()?))
}

pub async fn search(
    pool: &AnyPool,
    scope: &ClinicScope,
    q: &AuditQuery,
) -> Result<AuditPage, ServerError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ServerError::BadRequest { field: "limit" });
    }
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| parse_cursor(c).ok_or(ServerError::BadRequest { field: "cursor" }))
        .transpose()?;
    let mut qb = Statement::new(
        "SELECT e.event_json, e.signature, e.received_at_ms, e.leaf_index
         FROM audit_events e WHERE e.leaf_index IS NOT NULL AND e.clinic_id = ",
    );
    qb.bind(scope.clinic_id().to_string());
    if let Some(p) = q.patient_id {
        qb.push(" AND e.patient_id = ").bind(p.to_string());
    }
    if let Some(u) = q.user_id {
        qb.push(" AND e.actor_user_id = ").bind(u.to_string());
    }
    if let Some(d) = q.device_id {
        qb.push(" AND e.device_id = ").bind(d.to_string());
    }
    if let Some(a) = q.action {
        qb.push(" AND e.action = ").bind(a.as_str());
    }
    if let Some(from) = q.from_ms {
        qb.push(" AND e.occurred_at_ms >= ").bind(from);
    }
    if let Some(to) = q.to_ms {
        qb.push(" AND e.occurred_at_ms < ").bind(to);
    }
    if let Some((ms, id)) = cursor {
        qb.push(" AND (e.occurred_at_ms < ")
            .bind(ms)
            .push(" OR (e.occurred_at_ms = ")
            .bind(ms)
            .push(" AND e.id < ")
            .bind(id.to_string())
            .push("))");
    }
    qb.push(" ORDER BY e.occurred_at_ms DESC, e.id DESC LIMIT ")
        .bind(i64::from(limit) + 1);
    let rows = qb.query().fetch_all(pool).await?;
    let mut events = rows
        .iter()
        .map(|r| {
            let event: AuditEvent = serde_json::from_str(r.get::<&str, _>(0))
                .map_err(|_| ServerError::Internal("stored event malformed"))?;
            Ok(AuditRecord {
                event,
                signature: r.get(1),
                received_at_ms: r.get(2),
                leaf_index: u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = more
        .then(|| events.last())
        .flatten()
        .map(|r| format!("{}.{}", r.event.occurred_at_ms, r.event.id));
    Ok(AuditPage {
        events,
        next_cursor,
    })
}

/// Tamper alerts and outstanding sequences of the scope's clinic.
pub async fn alerts(pool: &AnyPool, scope: &ClinicScope) -> Result<AuditAlerts, ServerError> {
    let clinic = scope.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT device_id, device_seq, kind, hash, received_at_ms, logged_event_id FROM audit_alerts
         WHERE clinic_id = $1 ORDER BY id",
    )
    .bind(&clinic)
    .fetch_all(pool)
    .await?;
    let tamper = rows
        .iter()
        .map(|r| {
            Ok(TamperAlert {
                device_id: Uuid::parse_str(r.get::<&str, _>(0))
                    .map_err(|_| ServerError::Internal("stored id malformed"))?,
                device_seq: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                kind: r.get(2),
                hash: Hash32::from_hex(r.get::<&str, _>(3))
                    .ok_or(ServerError::Internal("stored hash malformed"))?,
                received_at_ms: r.get(4),
                logged_event_id: r
                    .get::<Option<&str>, _>(5)
                    .map(Uuid::parse_str)
                    .transpose()
                    .map_err(|_| ServerError::Internal("stored id malformed"))?,
            })
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let heads = sqlx::query(
        "SELECT device_id, contiguous_seq FROM audit_device_heads
         WHERE clinic_id = $1 AND max_seq > contiguous_seq ORDER BY device_id",
    )
    .bind(&clinic)
    .fetch_all(pool)
    .await?;
    let mut outstanding = Vec::new();
    for head in heads {
        let device: String = head.get(0);
        let device_id =
            Uuid::parse_str(&device).map_err(|_| ServerError::Internal("stored id malformed"))?;
        let mut expected = u64::try_from(head.get::<i64, _>(1)).unwrap_or(0) + 1;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT device_seq FROM audit_events WHERE device_id = $1 AND device_seq > $2 ORDER BY device_seq",
        )
        .bind(&device)
        .bind(head.get::<i64, _>(1))
        .fetch_all(pool)
        .await?;
        for seq in seqs {
            let seq = u64::try_from(seq).unwrap_or(0);
            if seq > expected {
                outstanding.push(OutstandingRange {
                    device_id,
                    from_seq: expected,
                    to_seq: seq - 1,
                });
            }
            expected = seq + 1;
        }
    }
    Ok(AuditAlerts {
        tamper,
        outstanding,
    })
}
