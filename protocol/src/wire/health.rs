//! `GET /healthz`: the server's liveness answer.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`, or `unavailable` (answered with 503) when the server cannot record what it
    /// serves: `problem` says why.
    pub status: String,
    pub version: String,
    /// `storage_full`: the embedded store's filesystem has less than 1 MiB free, or (on
    /// PostgreSQL) a write failed for lack of space in the last 30 seconds with no commit
    /// since. Reads and writes of PHI are refused until it has room again; the server
    /// recovers by itself then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
