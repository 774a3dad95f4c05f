//! Reading the audit trail: search newest first with a cursor, tamper alerts and
//! outstanding device sequences. Always within one clinic.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::export::ExportFilters;
use clinicdesk_protocol::wire::{AuditAlerts, AuditPage, OutstandingRange};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{Store, audit_query};

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
    pub fn first_page(filters: &ExportFilters, limit: u32) -> Self {
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

    /// Its filters, without the page.
    pub fn filters(&self) -> ExportFilters {
        ExportFilters {
            patient_id: self.patient_id,
            user_id: self.user_id,
            device_id: self.device_id,
            action: self.action,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

/// `cursor` is the (time, id) of the last event of the previous page.
fn parse_cursor(c: &str) -> Option<(i64, Uuid)> {
    let (ms, id) = c.split_once('.')?;
    Some((ms.parse().ok()?, Uuid::parse_str(id).ok()?))
}

/// A page of the scope's events matching `q`, newest first, with the cursor of the next.
pub async fn search(
    store: &Store,
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
    // One more than a page: whether there is a next one.
    let mut events = store
        .audit_events(scope, &q.filters(), cursor, i64::from(limit) + 1)
        .await?;
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

/// Tamper alerts, outstanding sequences, events received after a revocation and flagged
/// claims of the scope's clinic.
pub async fn alerts(store: &Store, scope: &ClinicScope) -> Result<AuditAlerts, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let tamper = audit_query::tamper_alerts(&mut tx).await?;
    let mut outstanding = Vec::new();
    for head in audit_query::devices_behind(&mut tx).await? {
        let mut expected = u64::try_from(head.contiguous_seq).unwrap_or(0) + 1;
        let seqs =
            audit_query::sequences_after(&mut tx, head.device_id, head.contiguous_seq).await?;
        for seq in seqs {
            let seq = u64::try_from(seq).unwrap_or(0);
            if seq > expected {
                outstanding.push(OutstandingRange {
                    device_id: head.device_id,
                    from_seq: expected,
                    to_seq: seq - 1,
                });
            }
            expected = seq + 1;
        }
    }
    let received_after_revocation = audit_query::received_after_revocation(&mut tx).await?;
    let flagged_claims = audit_query::flagged_claims(&mut tx).await?;
    tx.commit().await?;
    Ok(AuditAlerts {
        tamper,
        outstanding,
        received_after_revocation,
        flagged_claims,
    })
}
