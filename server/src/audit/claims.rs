//! What a workstation may claim in the trail. Its signature proves only that its key signed
//! an event, not that the event is true: an insider holding the key could sign "Dr X viewed
//! patient P", or date an event to last year. So each event's claims are checked against
//! what the server itself recorded, the sign-ins on that workstation (sessions, never
//! deleted, each with the role it granted) and the workstation's enrollment:
//!
//! - The actor must have signed in on that workstation. An event naming anyone else is
//!   refused from the chain and kept as a tamper alert (`unknown_actor`); the app only ever
//!   records events for users who signed in on it.
//! - The role must be the one in force at the event's time: the one the actor's latest
//!   sign-in there was granted, unless an admin changed it after that sign-in (`role_changes`,
//!   counted from [`CLOCK_SKEW_MS`] after the change: the workstation may not have known, as
//!   when it worked offline, and its events then are exactly what admins need to see). The time must lie after the enrollment (and the actor's first sign-in)
//!   and not ahead of the server's clock, each within [`CLOCK_SKEW_MS`]. An event that fails
//!   these is stored, never dropped (a workstation with a wrong clock must not lose its
//!   trail), and flagged by a `claim_flagged` server event naming the claims in doubt, which
//!   admins see with the alerts and every report shows beside the server's receipt time.

use std::collections::HashMap;

use clinicdesk_protocol::audit::AuditEvent;
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::users::RoleChange;
use crate::store::{DeviceRecord, SignIn, Store};

/// How far a workstation's clock may be from the server's before its times are doubted.
pub const CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// What the server makes of one event's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The actor never signed in on this workstation: refused, kept as a tamper alert.
    UnknownActor,
    /// Stored; the claims named (`actor_role`, `occurred_at_ms`) are flagged. Empty: none.
    Stored(Vec<&'static str>),
}

/// The sign-ins and enrollment one batch's events are judged against.
pub struct Claims {
    sign_ins: HashMap<Uuid, Vec<SignIn>>,
    /// Each actor's role changes since the first of those sign-ins, oldest first.
    role_changes: HashMap<Uuid, Vec<RoleChange>>,
    enrolled_at_ms: i64,
    now_ms: i64,
}

impl Claims {
    /// Reads, for each actor of `events`, the sign-ins on `device` around the events' times
    /// and the changes of their role since the first of those.
    pub async fn load(
        store: &Store,
        scope: &ClinicScope,
        device: &DeviceRecord,
        events: &[&AuditEvent],
        now_ms: i64,
    ) -> Result<Self, ServerError> {
        let mut span: HashMap<Uuid, (i64, i64)> = HashMap::new();
        for e in events {
            let t = e.occurred_at_ms;
            span.entry(e.actor_user_id)
                .and_modify(|(lo, hi)| {
                    *lo = (*lo).min(t);
                    *hi = (*hi).max(t);
                })
                .or_insert((t, t));
        }
        let mut sign_ins = HashMap::with_capacity(span.len());
        let mut role_changes = HashMap::with_capacity(span.len());
        for (actor, (lo, hi)) in span {
            let found = store
                .sign_ins_around(
                    device.id,
                    actor,
                    lo.saturating_add(CLOCK_SKEW_MS),
                    hi.saturating_add(CLOCK_SKEW_MS),
                )
                .await?;
            if let Some(first) = found.first() {
                let changes = store.role_changes(scope, actor, first.at_ms, hi).await?;
                role_changes.insert(actor, changes);
            }
            sign_ins.insert(actor, found);
        }
        Ok(Claims {
            sign_ins,
            role_changes,
            enrolled_at_ms: device.enrolled_at_ms,
            now_ms,
        })
    }

    pub fn judge(&self, e: &AuditEvent) -> Verdict {
        let sign_ins = match self.sign_ins.get(&e.actor_user_id) {
            Some(s) if !s.is_empty() => s,
            _ => return Verdict::UnknownActor,
        };
        let t = e.occurred_at_ms;
        let mut doubted = Vec::new();
        let latest = sign_ins
            .iter()
            .rev()
            .find(|s| s.at_ms <= t.saturating_add(CLOCK_SKEW_MS));
        // Before the actor's first sign-in here: judged by that first one's role.
        let granted = latest.unwrap_or(&sign_ins[0]);
        if latest.is_none()
            || t < self.enrolled_at_ms.saturating_sub(CLOCK_SKEW_MS)
            || t > self.now_ms.saturating_add(CLOCK_SKEW_MS)
        {
            doubted.push("occurred_at_ms");
        }
        // An admin's change after that sign-in, once the workstation's clock is past it.
        let changed = self
            .role_changes
            .get(&e.actor_user_id)
            .into_iter()
            .flatten()
            .rev()
            .find(|c| c.at_ms > granted.at_ms && c.at_ms.saturating_add(CLOCK_SKEW_MS) < t);
        let in_force = changed.map_or(granted.role, |c| Some(c.role));
        if in_force != Some(e.actor_role) {
            doubted.push("actor_role");
        }
        Verdict::Stored(doubted)
    }
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::audit::{AuditAction, Hash32, Outcome, Recorder};
    use clinicdesk_protocol::policy::Role;

    use super::*;

    const ENROLLED: i64 = 1_000_000_000;
    const NOW: i64 = ENROLLED + 10 * 86_400_000;

    fn event(actor: Uuid, role: Role, at: i64) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            clinic_id: Uuid::from_u128(1),
            actor_user_id: actor,
            actor_role: role,
            recorded_by: Recorder::Device,
            device_id: Uuid::from_u128(2),
            device_seq: 1,
            action: AuditAction::View,
            resource_type: "Patient".into(),
            resource_id: "p".into(),
            patient_id: None,
            fields: vec![],
            outcome: Outcome::Success,
            occurred_at_ms: at,
            offline: false,
            route: "patient".into(),
            break_glass: None,
            request: None,
            prev_hash: Hash32::GENESIS,
            change: None,
        }
    }

    fn claims(actor: Uuid, sign_ins: &[(i64, Role)]) -> Claims {
        let list = sign_ins
            .iter()
            .map(|&(at_ms, role)| SignIn {
                at_ms,
                role: Some(role),
            })
            .collect();
        Claims {
            sign_ins: HashMap::from([(actor, list)]),
            role_changes: HashMap::new(),
            enrolled_at_ms: ENROLLED,
            now_ms: NOW,
        }
    }

    #[test]
    fn each_claim_is_judged_against_the_sign_ins_on_the_workstation() {
        let (dr, other) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let hour = 3_600_000;
        let c = claims(
            dr,
            &[
                (ENROLLED + hour, Role::Clinician),
                (ENROLLED + 5 * hour, Role::Billing),
            ],
        );
        let judged = |actor, role, at| c.judge(&event(actor, role, at));
        let fine = Verdict::Stored(vec![]);
        assert_eq!(
            judged(dr, Role::Clinician, ENROLLED + 2 * hour),
            fine,
            "as signed in"
        );
        assert_eq!(
            judged(dr, Role::Billing, ENROLLED + 6 * hour),
            fine,
            "after the later sign-in, with its role"
        );
        assert_eq!(
            judged(dr, Role::Clinician, ENROLLED + hour - CLOCK_SKEW_MS + 1),
            fine,
            "a clock a little behind"
        );
        assert_eq!(
            judged(other, Role::Clinician, ENROLLED + 2 * hour),
            Verdict::UnknownActor
        );
        assert_eq!(
            judged(dr, Role::Admin, ENROLLED + 2 * hour),
            Verdict::Stored(vec!["actor_role"]),
            "a role the sign-in did not grant"
        );
        assert_eq!(
            judged(dr, Role::Clinician, ENROLLED + 6 * hour),
            Verdict::Stored(vec!["actor_role"]),
            "the earlier sign-in's role after a later one"
        );
        assert_eq!(
            judged(dr, Role::Clinician, ENROLLED - 86_400_000),
            Verdict::Stored(vec!["occurred_at_ms"]),
            "backdated before the enrollment"
        );
        assert_eq!(
            judged(dr, Role::Clinician, ENROLLED + hour / 2),
            Verdict::Stored(vec!["occurred_at_ms"]),
            "before the actor's first sign-in here"
        );
        assert_eq!(
            judged(dr, Role::Billing, NOW + CLOCK_SKEW_MS + 1),
            Verdict::Stored(vec!["occurred_at_ms"]),
            "ahead of the server's clock"
        );
        assert_eq!(
            judged(dr, Role::Billing, NOW + CLOCK_SKEW_MS),
            fine,
            "within the skew"
        );
    }

    #[test]
    fn an_admins_role_change_after_the_sign_in_sets_the_role_in_force() {
        let dr = Uuid::from_u128(7);
        let hour = 3_600_000;
        let mut c = claims(dr, &[(ENROLLED + hour, Role::Clinician)]);
        let changed_at = ENROLLED + 2 * hour;
        c.role_changes.insert(
            dr,
            vec![RoleChange {
                at_ms: changed_at,
                role: Role::Billing,
            }],
        );
        let judged = |role, at| c.judge(&event(dr, role, at));
        let fine = Verdict::Stored(vec![]);
        let doubted = Verdict::Stored(vec!["actor_role"]);
        assert_eq!(judged(Role::Clinician, changed_at - 1), fine, "before it");
        assert_eq!(
            judged(Role::Clinician, changed_at + CLOCK_SKEW_MS - 1),
            fine,
            "within the clock skew"
        );
        assert_eq!(
            judged(Role::Clinician, changed_at + CLOCK_SKEW_MS + 1),
            doubted
        );
        assert_eq!(judged(Role::Billing, changed_at + CLOCK_SKEW_MS + 1), fine);
    }
}
