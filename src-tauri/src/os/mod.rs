//! What the app takes from the operating system: its clocks ([`clock`]: the wall clock
//! for audit timestamps, the monotonic one for idle time), the idle watch ([`idle`]), the
//! OS's lock, suspend and screensaver signals ([`lock_signals`]) and the security keys the
//! WebAuthn second factor runs on ([`security_key`]).
//!
//! Imports only the crate root's `error` and `config`. Must not import `crate::core`,
//! `crate::local`, `crate::secrets` or `crate::net`: the watchers lock the app through
//! [`Lockable`], which the core implements, so the OS side never names the core.

pub mod clock;
pub mod idle;
pub mod lock_signals;
pub mod security_key;

/// What the OS side asks of the app: lock now, or lock if it has been idle too long.
/// `crate::core::Core` implements it; tests may wrap it.
pub trait Lockable: Send + Sync + 'static {
    /// Locks now, naming the cause in the audit event (`os_lock`, `os_suspend`, ...).
    fn lock_for(&self, cause: &'static str);
    /// Locks if the idle deadline has passed; returns whether it locked.
    fn lock_if_idle(&self) -> bool;
}
