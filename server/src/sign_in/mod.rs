//! Signing in: the password step's helpers, second factors ([`mfa`]) and the failed sign-in
//! counts ([`throttle`]). Domain code: no axum (it must not import `crate::http`).

pub mod mfa;
pub mod throttle;
