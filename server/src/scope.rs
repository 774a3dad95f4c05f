//! The proofs a request carries into the domain and the store: [`ClinicScope`], the clinic
//! it acts within, and [`Console`], the operator at the server's own console.
//!
//! A `ClinicScope` is built only from an input that was already verified: an authenticated
//! [`Principal`], a device-signed batch whose every signature checked out, a redeemed
//! enrollment code, an MFA ticket, a clinic this very transaction created, or the console.
//! No constructor takes a bare id, and `cargo xtask tidy` checks that each constructor is
//! called only from the module that holds its verified input (ARCHITECTURE.md).

use clinicdesk_protocol::wire::UserInfo;
use uuid::Uuid;

/// Proof that a request acts within one clinic. Private field: only the constructors below
/// build it, each from a verified input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicScope {
    clinic_id: Uuid,
}

impl ClinicScope {
    pub fn clinic_id(&self) -> Uuid {
        self.clinic_id
    }

    /// The clinic of a principal that `http::authorize` found behind a live session.
    pub(crate) fn of_principal(principal: &Principal) -> Self {
        Self {
            clinic_id: principal.user.clinic_id,
        }
    }

    /// The clinic of a registered, live device whose batch of events all carried valid
    /// signatures of its key (`audit::batch::verify_device_batch`).
    pub(crate) fn of_signed_batch(device: &crate::store::DeviceRecord) -> Self {
        Self {
            clinic_id: device.clinic_id,
        }
    }

    /// The clinic of a registered, live workstation proving itself at a sign-in, for its
    /// own rows (its recovery key) before any session exists.
    pub(crate) fn of_workstation(device: &crate::store::DeviceRecord) -> Self {
        Self {
            clinic_id: device.clinic_id,
        }
    }

    /// The clinic of a one-time enrollment code the new workstation just redeemed.
    pub(crate) fn of_enrollment(redeemed: &crate::store::RedeemedCode) -> Self {
        Self {
            clinic_id: redeemed.clinic_id,
        }
    }

    /// The clinic of a login ticket: its user proved the password on a device of the clinic.
    pub(crate) fn of_mfa_ticket(ticket: &crate::store::mfa::Ticket) -> Self {
        Self {
            clinic_id: ticket.user.clinic_id,
        }
    }

    /// The clinic of an account a failed sign-in named on one of the clinic's devices (or
    /// in a ticket or session of it), for recording the attempt on that account alone.
    pub(crate) fn of_attempted_account(user: &UserInfo) -> Self {
        Self {
            clinic_id: user.clinic_id,
        }
    }

    /// A clinic that the caller's transaction has just created (provisioning).
    pub(crate) fn of_new_clinic(clinic: &crate::store::NewClinic) -> Self {
        Self {
            clinic_id: clinic.id,
        }
    }

    /// A clinic the operator names on the server's console.
    pub fn of_console(_console: &Console, clinic_id: Uuid) -> Self {
        Self { clinic_id }
    }
}

/// Proof of the operator at the server's console: the CLI (`main.rs`), the server's own
/// start-up maintenance and the tests build one; no request handler does (`cargo xtask
/// tidy` checks where [`Console::operator`] is called).
#[derive(Debug)]
pub struct Console(());

impl Console {
    pub fn operator() -> Self {
        Self(())
    }

    /// The console as the actor of an audit event in `clinic_id`: no user (the nil id, as
    /// `docs/audit-format.md` says), recorded with the admin role.
    pub fn actor(&self, clinic_id: Uuid) -> UserInfo {
        UserInfo {
            user_id: Uuid::nil(),
            username: String::new(),
            display_name: String::new(),
            role: clinicdesk_protocol::policy::Role::Admin,
            clinic_id,
        }
    }

    /// What an audit event records of a console command (`command`, e.g. `import`).
    pub fn seen(&self, command: &str) -> clinicdesk_protocol::audit::RequestSeen {
        clinicdesk_protocol::audit::RequestSeen {
            client_ip: "console".into(),
            user_agent: format!("clinicdesk-server {command}"),
            session_device_id: None,
        }
    }
}

/// Who is calling: the session's user, device and the token's hash. Built only by
/// `crate::session::session_principal` from a live session.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserInfo,
    pub device_id: Uuid,
    pub token_hash: String,
    /// The session was opened by a recovery sign-in (recovery key, then a second factor
    /// proven afresh): the only one that may have the escrowed device secret released.
    pub recovery_sign_in: bool,
}
