//! Signing in: the password step ([`password`]), second factors ([`mfa`]), the session that
//! ends a sign-in ([`session`]) and the failed sign-in counts ([`throttle`]). Domain code: no
//! axum, no SQL (it must not import `crate::http`; its rows are `crate::store`'s).

pub mod mfa;
pub mod password;
pub mod session;
pub mod throttle;
