//! The ClinicDesk server: a TLS-only axum API over a tenant-scoped store.
//!
//! Layers, top to bottom (ARCHITECTURE.md; `cargo xtask tidy` checks the rules):
//! - [`http`]: the only axum code. [`http::tls`] accepts the connection, [`http::router`]
//!   routes it, [`http::authorize`] applies the route's rule from
//!   `clinicdesk_protocol::policy::ROUTES` and builds the [`scope::ClinicScope`] proof, and a
//!   handler in [`http::routes`] makes one domain call and shapes the answer.
//! - Domain modules, no axum and no SQL: [`sign_in`], [`session`], [`devices`],
//!   [`clinical`], [`admin`], [`audit`], with [`secrets`] beneath them.
//! - [`store`]: the only place with SQL; it knows no rules about content.
//! - Beside them all: [`state`], [`scope`], [`time`], [`error`].

pub mod admin;
pub mod audit;
pub mod clinical;
pub mod devices;
pub mod error;
pub mod http;
pub mod scope;
pub mod secrets;
pub mod session;
pub mod sign_in;
pub mod state;
pub mod store;
pub mod time;

pub use error::ServerError;
pub use http::router::build_router;
pub use state::AppState;
