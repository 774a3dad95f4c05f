//! The workspaces of a signed-in user, shown only while the core's phase is `Unlocked`: for
//! the roles that read a schedule, the day and week ([`schedule`]), the patient finder, a
//! chart with its care team and break-glass prompt, and the front desk's forms (register,
//! edit details, book) and unsent changes, which share [`desk`]; billing's day of patients
//! with their coverage ([`billing`]); and `admin` for admins. This is the only part of the UI that
//! holds PHI, and it keeps it in `Ui`'s signals, which any other phase clears.
//!
//! Workspaces never import `screens` (nor they it): only the shell picks between the two,
//! by the core's phase. They reach the core only through `bridge`.

mod admin;
mod billing;
mod booking;
mod break_glass;
mod care_team;
mod changes;
mod desk;
mod edit_patient;
mod finder;
mod patient;
mod record;
mod register;
mod schedule;

pub(crate) use admin::AdminWorkspace;
pub(crate) use schedule::ScheduleWorkspace;
