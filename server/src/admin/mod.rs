//! Administration: users and their passwords, the clinic's settings, importing records and
//! the practitioner directory,
//! backups of the embedded store,
//! clinic provisioning, operator tokens and the
//! synthetic seed. Domain code: no axum (it must not import `crate::http`).

pub mod backup;
pub mod clinic;
pub mod directory;
pub mod import;
pub mod keys;
pub mod operator;
pub mod provisioning;
pub mod seed;
pub mod seed_scale;
pub mod users;
