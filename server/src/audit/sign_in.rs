//! Failed sign-ins in the trail (HIPAA's log-in monitoring): a wrong password or second
//! factor for an existing account is a `login` event with outcome `failure`, and the
//! failure that locks the account out adds a `login` event with outcome `denied` on an
//! `AccountLockout`. Both name the account, the workstation and the address it came from.
//!
//! Attempts on usernames that do not exist are not recorded (there is no account to name;
//! the throttle still counts them), nor are requests refused while an account is locked
//! (they prove nothing, and recording them would let anyone grow the trail at will). The
//! events are written off the request path, so a wrong password for a real account
//! answers as fast as one for an unknown name.

use clinicdesk_protocol::audit::{AuditAction, Outcome};
use clinicdesk_protocol::wire::UserInfo;
use uuid::Uuid;

use super::access::Seen;
use super::server_chain::{self, ServerEvent};
use crate::scope::ClinicScope;
use crate::state::AppState;

/// Records a failed attempt on `user`'s account (and the lockout it caused, if it did)
/// in the background; a failure to record is logged.
pub fn record_failure(
    state: &AppState,
    user: &UserInfo,
    seen: &Seen,
    device_id: Uuid,
    locked_out: bool,
) {
    let route = seen.route.clone();
    let seen = seen.clone().for_session(device_id);
    let event = |outcome, resource_type: &str| ServerEvent {
        actor_user_id: user.user_id,
        actor_role: user.role,
        action: AuditAction::Login,
        resource_type: resource_type.to_owned(),
        resource_id: user.user_id.to_string(),
        patient_id: None,
        fields: Vec::new(),
        outcome,
        route: route.clone(),
        break_glass: None,
        request: seen.clone(),
        change: None,
    };
    let mut events = vec![event(Outcome::Failure, "Account")];
    if locked_out {
        events.push(event(Outcome::Denied, "AccountLockout"));
    }
    let scope = ClinicScope::of_attempted_account(user);
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = server_chain::record(&state, &scope, events).await {
            tracing::error!(error = %e, route, "a failed sign-in could not be recorded");
        }
    });
}
