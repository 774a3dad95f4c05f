//! What the server answered when this workstation enrolled, and what it pinned then: kept
//! in `enrollment.json` (no secret in it) and read by every later request and receipt check.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Paths;
use crate::error::AppError;
use crate::files::{read_json, write_json};

/// What the server said at enrollment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrollment {
    pub device_id: Uuid,
    pub clinic_id: Uuid,
    pub clinic_name: String,
    pub server_url: String,
    pub device_name: String,
    /// The server's audit key (hex), pinned at enrollment: only receipts it signs make
    /// the outbox forget events. Enrollments from before receipts were signed have none:
    /// their events stay in the outbox (nothing is lost) until the device is re-enrolled.
    #[serde(default)]
    pub audit_public_key: String,
}

pub fn load_enrollment(paths: &Paths) -> Result<Option<Enrollment>, AppError> {
    read_json(&paths.enrollment, "enrollment.json")
}

pub fn save_enrollment(paths: &Paths, enrollment: &Enrollment) -> Result<(), AppError> {
    write_json(&paths.enrollment, enrollment)
}
