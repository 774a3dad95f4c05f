//! The ClinicDesk server: a TLS-only axum API over a tenant-scoped store.
//!
//! Request flow: [`tls`] accepts the connection, [`app`] routes it, the [`auth`]
//! middleware applies the route's rule from `clinicdesk_protocol::policy::ROUTES` and
//! builds the [`auth::ClinicScope`] proof, and a handler in [`routes`] calls [`store`].

pub mod app;
pub mod audit;
pub mod auth;
pub mod break_glass;
pub mod care_team;
pub mod clock;
pub mod device_registry;
pub mod error;
pub mod key_file;
pub mod mfa;
pub mod openapi;
pub mod operator;
pub mod passwords;
pub mod provisioning;
pub mod random;
pub mod routes;
pub mod seal;
pub mod seed;
mod sql;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod users;

pub use app::{AppState, build_router};
pub use error::ServerError;
