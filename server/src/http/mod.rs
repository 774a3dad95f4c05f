//! The only axum code of the server: the router and its security headers, the
//! [`authorize`] middleware that applies the policy table, the [`record`] middleware that
//! records what a PHI or audit-trail answer discloses before it leaves, the extractors
//! ([`seen`]: what the server saw of a request), errors as responses, OpenAPI, the TLS accept
//! loop, and one module of handlers per resource.
//!
//! Layer rule (checked by `cargo xtask tidy`): `http` may import everything below it
//! (domain modules, `audit`, `store`, `scope`, `state`); nothing outside `http` imports it.

pub mod authorize;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod record;
pub mod router;
pub mod routes;
pub mod seen;
pub mod tls;
