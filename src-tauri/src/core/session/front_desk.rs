//! The front desk's day: the schedule of any day in the clinic's time zone, who can be
//! booked and when, and the changes the desk makes (register, edit, book, check in, cancel,
//! no-show), each queued with its audit event and sent when the server answers
//! ([`super::changes`]). A change made offline shows on this workstation at once: its effect
//! on the cached copy is part of the same transaction as its place in the queue.

use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::phi::Phi;
use clinicdesk_protocol::wire::{
    Appointment, AppointmentFields, AppointmentList, AppointmentStatus, AppointmentUpdate,
    ClinicalAccess, FreeSlots, HumanName, NewAppointment, Patient, PatientFields, PatientRecord,
    PatientRegistration, PatientUpdate, PractitionerList,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::cache::{self, Cache};
use crate::local::changes::Change;

/// What the booking form sends: the clinic-local day and time of the start. A patient's
/// appointment time is PHI: its `Debug` names the type only.
#[derive(Clone, Deserialize)]
pub struct Booking {
    pub patient_id: Uuid,
    pub practitioner_id: Uuid,
    /// `YYYY-MM-DD`, the clinic's day.
    pub date: String,
    /// `HH:MM`, the clinic's wall clock.
    pub time: String,
    pub duration_mins: u32,
    #[serde(default)]
    pub appointment_type: String,
    #[serde(default)]
    pub reason: Phi<String>,
}

/// What a change of an appointment from the schedule does (`Debug`: the type only).
#[derive(Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AppointmentAction {
    /// The patient is here.
    Arrive,
    /// The visit begins (opens its encounter).
    CheckIn,
    NoShow,
    Cancel {
        reason: Phi<String>,
    },
    /// Another day or time (the clinic's).
    Reschedule {
        date: String,
        time: String,
    },
}

impl std::fmt::Debug for Booking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Booking(redacted)")
    }
}

impl std::fmt::Debug for AppointmentAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppointmentAction(redacted)")
    }
}

/// The instant the clinic's wall clock shows `time` on `date`, in RFC 3339 with the clinic's
/// offset then (a time the clocks skip or repeat resolves as the server does).
fn local_start(date: &str, time: &str, time_zone: &str) -> Result<String, AppError> {
    let civil: jiff::civil::DateTime = format!("{date}T{time}")
        .parse()
        .map_err(|_| AppError::BadInput("start"))?;
    let zoned = civil
        .in_tz(time_zone)
        .map_err(|_| AppError::BadInput("start"))?;
    Ok(zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

/// The clinic's time zone as the cached schedule last said (UTC before any was cached).
fn clinic_time_zone(cache: &Cache) -> String {
    cache
        .latest_appointments()
        .ok()
        .flatten()
        .map_or_else(|| "UTC".to_owned(), |l| l.time_zone)
}

/// The day of `days` (`YYYY-MM-DD`) nearest to `to`.
fn nearest(to: &str, days: Vec<String>) -> Option<String> {
    let to: jiff::civil::Date = to.parse().ok()?;
    days.into_iter()
        .filter_map(|d| {
            let date: jiff::civil::Date = d.parse().ok()?;
            let apart = (date - to).get_days().abs();
            Some((apart, d))
        })
        .min()
        .map(|(_, d)| d)
}

/// Today in `time_zone` at `now_ms`.
fn today_in(time_zone: &str, now_ms: i64) -> Option<String> {
    let zone = jiff::tz::TimeZone::get(time_zone).ok()?;
    let now = jiff::Timestamp::from_millisecond(now_ms).ok()?;
    Some(now.to_zoned(zone).date().to_string())
}

impl Core {
    /// The schedule of `date` (the clinic's day; today there when `None`), from the server
    /// or, offline, from the cache; audited either way before it is returned.
    pub async fn schedule(&self, date: Option<String>) -> Result<AppointmentList, AppError> {
        if let Some(d) = &date
            && d.parse::<jiff::civil::Date>().is_err()
        {
            return Err(AppError::BadInput("date"));
        }
        let now = self.clock.now_ms();
        let wanted = date.clone();
        self.read_schedule(
            move |client, token| async move { client.appointments(&token, date.as_deref()).await },
            move |cache| match wanted {
                Some(day) => cache.appointments_on(&day),
                // Today at the clinic by this workstation's clock; if that day is not in
                // the copy (the clock is off), the cached day nearest to it.
                None => {
                    let Some(today) = today_in(&clinic_time_zone(cache), now) else {
                        return cache.latest_appointments();
                    };
                    match cache.appointments_on(&today)? {
                        Some(list) => Ok(Some(list)),
                        None => match nearest(&today, cache.cached_days()?) {
                            Some(day) => cache.appointments_on(&day),
                            None => Ok(None),
                        },
                    }
                }
            },
        )
        .await
    }

    /// A patient's registration record (to edit it), from the server or, offline, as last
    /// read or changed here; audited either way before it is returned.
    pub async fn patient_record(&self, id: Uuid) -> Result<PatientRecord, AppError> {
        self.read_record(
            move |c, t| async move { c.patient_record(&t, id).await },
            move |cache| cache.patient_record(id),
        )
        .await
    }

    /// Who can be booked: from the server (kept for offline), or the kept list offline.
    /// Names of staff only: no PHI, nothing to audit.
    pub async fn practitioners(&self) -> Result<PractitionerList, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let fetched = self
            .fetch(token, |c, t| async move { c.practitioners(&t).await })
            .await;
        let fetched = match fetched {
            Ok(list) => Some(list),
            Err(AppError::Unreachable) => None,
            Err(e) => return Err(self.refused_in(generation, e).await),
        };
        self.with_unlocked(generation, |u, _| match fetched {
            Some(list) => {
                u.cache
                    .transaction(|tx| cache::put_practitioners(tx, &list))?;
                Ok(list)
            }
            None => u.cache.practitioners()?.ok_or(AppError::Unreachable),
        })
    }

    /// Where an appointment of `duration_mins` fits on `date` with the practitioner
    /// (online only: offline, the desk types a time and the server checks it when sent).
    pub async fn free_slots(
        &self,
        practitioner_id: Uuid,
        date: String,
        duration_mins: u32,
    ) -> Result<FreeSlots, AppError> {
        self.online_call(|c, t| async move {
            c.free_slots(&t, practitioner_id, &date, duration_mins)
                .await
        })
        .await
    }

    /// Registers a new patient, online or off. The id is chosen here so that a booking made
    /// before the server has the patient can name them. A likely duplicate comes back as
    /// the change's state (`possible_duplicate`, with the candidates).
    pub async fn register_patient(&self, fields: PatientFields) -> Result<ChangeSummary, AppError> {
        let name = fields.name.clone().ok_or(AppError::BadInput("name"))?;
        if name.family.trim().is_empty() {
            return Err(AppError::BadInput("name"));
        }
        let birth_date = fields
            .birth_date
            .clone()
            .filter(|d| d.parse::<jiff::civil::Date>().is_ok())
            .ok_or(AppError::BadInput("birth_date"))?;
        let id = Uuid::new_v4();
        let cached = Patient {
            id,
            name: Phi::new(name.display()),
            birth_date: Phi::new(birth_date),
            mrn: Phi::new(String::new()),
            phone: Phi::new(fields.phone.clone().unwrap_or_default()),
            clinical: None,
            clinical_access: ClinicalAccess::NotPermitted,
            break_glass: None,
        };
        let record = PatientRecord {
            id,
            version: 1,
            fields: fields.clone().filled(),
        };
        let change = Change::RegisterPatient {
            id,
            registration: PatientRegistration {
                id: Some(id),
                fields,
                confirm_new_person: false,
            },
        };
        self.make_change(change, |tx, now| {
            cache::put_patient(tx, &cached, now)?;
            cache::put_patient_record(tx, &record, now)
        })
        .await
    }

    /// Changes a patient's registration fields, based on the version the user saw.
    pub async fn update_patient(
        &self,
        id: Uuid,
        based_on: u64,
        fields: PatientFields,
        reason: Phi<String>,
    ) -> Result<ChangeSummary, AppError> {
        if fields.present().is_empty() {
            return Err(AppError::BadInput("fields"));
        }
        // The version this workstation last knew, counting changes queued here.
        let (_, generation) = self.session_snapshot()?;
        let cached = self.with_unlocked(generation, |u, _| Ok(u.cache.patient_record(id)?))?;
        let based_on = cached
            .as_ref()
            .map_or(based_on, |r| r.version.max(based_on));
        let shown = fields.clone();
        let change = Change::UpdatePatient {
            id,
            based_on,
            update: PatientUpdate { fields, reason },
        };
        self.make_change(change, move |tx, now| {
            if let Some(mut record) = cache::patient_record_in(tx, id)? {
                record.fields.apply(&shown);
                record.version = based_on + 1;
                cache::put_patient_record(tx, &record, now)?;
            }
            let Some(mut patient) = cache::patient_in(tx, id)? else {
                return Ok(());
            };
            if let Some(name) = shown.name.as_ref().map(HumanName::display) {
                patient.name = Phi::new(name);
            }
            if let Some(d) = shown.birth_date {
                patient.birth_date = Phi::new(d);
            }
            if let Some(p) = shown.phone {
                patient.phone = Phi::new(p);
            }
            cache::put_patient(tx, &patient, now)
        })
        .await
    }

    /// Books an appointment (status `booked`) at the clinic's `date` and `time`.
    pub async fn book(&self, booking: Booking) -> Result<ChangeSummary, AppError> {
        if !(5..=480).contains(&booking.duration_mins) {
            return Err(AppError::BadInput("duration_mins"));
        }
        let (_, generation) = self.session_snapshot()?;
        let (time_zone, patient_name) = self.with_unlocked(generation, |u, _| {
            let zone = u
                .cache
                .appointments_on(&booking.date)?
                .map_or_else(|| clinic_time_zone(&u.cache), |l| l.time_zone);
            let name = u
                .cache
                .cached_patient(booking.patient_id)?
                .map(|p| p.name.into_inner())
                .unwrap_or_default();
            Ok((zone, name))
        })?;
        let start = local_start(&booking.date, &booking.time, &time_zone)?;
        let id = Uuid::new_v4();
        let appointment_type = Some(booking.appointment_type.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "routine".to_owned());
        let fields = AppointmentFields {
            patient_id: Some(booking.patient_id),
            practitioner_id: Some(booking.practitioner_id),
            start: Some(start.clone()),
            duration_mins: Some(booking.duration_mins),
            appointment_type: Some(appointment_type),
            reason: Some(booking.reason.expose().clone()),
            ..AppointmentFields::default()
        };
        let shown = Appointment {
            id,
            patient_id: booking.patient_id,
            starts_at: start,
            patient_name: Phi::new(patient_name),
            reason: booking.reason,
            status: Some(AppointmentStatus::Booked),
            practitioner_id: Some(booking.practitioner_id),
            duration_mins: Some(booking.duration_mins),
            version: Some(1),
        };
        let change = Change::Book {
            id,
            booking: NewAppointment {
                id: Some(id),
                fields,
            },
        };
        let day = booking.date;
        self.make_change(change, move |tx, now| {
            cache::add_appointment(tx, &day, &time_zone, shown, now)
        })
        .await
    }

    /// Moves an appointment along its course (arrived, checked in, no-show, cancelled) or
    /// to another time, based on the version this workstation last knew of it: its cached
    /// copy's (which counts the changes queued here), else `based_on` as the screen saw it.
    pub async fn change_appointment(
        &self,
        id: Uuid,
        based_on: u64,
        action: AppointmentAction,
    ) -> Result<ChangeSummary, AppError> {
        let (_, generation) = self.session_snapshot()?;
        let cached = self.with_unlocked(generation, |u, _| {
            Ok(u.cache
                .transaction(|tx| cache::cached_appointment(tx, id))?)
        })?;
        let cached = cached.ok_or(AppError::BadInput("appointment_id"))?;
        let based_on = cached.version.unwrap_or(based_on);
        let mut fields = AppointmentFields::default();
        let mut reason_for_change = Phi::new(String::new());
        // A move to another day takes the appointment out of its day's copy into the new one.
        let mut moved_to: Option<(String, String)> = None;
        let status = |s| Some(s);
        match action {
            AppointmentAction::Arrive => fields.status = status(AppointmentStatus::Arrived),
            AppointmentAction::CheckIn => fields.status = status(AppointmentStatus::CheckedIn),
            AppointmentAction::NoShow => fields.status = status(AppointmentStatus::NoShow),
            AppointmentAction::Cancel { reason } => {
                if reason.expose().trim().is_empty() {
                    return Err(AppError::BadInput("cancellation_reason"));
                }
                fields.status = status(AppointmentStatus::Cancelled);
                fields.cancellation_reason = Some(reason.expose().clone());
                reason_for_change = reason;
            }
            AppointmentAction::Reschedule { date, time } => {
                let zone = self.with_unlocked(generation, |u, _| {
                    Ok(u.cache
                        .appointments_on(&date)?
                        .map_or_else(|| clinic_time_zone(&u.cache), |l| l.time_zone))
                })?;
                fields.start = Some(local_start(&date, &time, &zone)?);
                moved_to = Some((date, zone));
            }
        }
        if let Some(to) = fields.status
            && !cached.status.unwrap_or_default().may_become(to)
        {
            return Err(AppError::BadInput("status"));
        }
        let shown = fields.clone();
        let change = Change::ChangeAppointment {
            id,
            patient_id: cached.patient_id,
            based_on,
            update: AppointmentUpdate {
                fields,
                reason_for_change,
            },
        };
        self.make_change(change, move |tx, now| {
            if let (Some((day, zone)), Some(start)) = (moved_to, shown.start.clone()) {
                let mut moved = cached;
                moved.starts_at = start;
                moved.version = Some(based_on + 1);
                cache::forget_appointment(tx, id, now)?;
                return cache::add_appointment(tx, &day, &zone, moved, now);
            }
            cache::change_appointment(tx, id, now, |a| {
                if let Some(s) = shown.status {
                    a.status = Some(s);
                }
                if let Some(start) = shown.start {
                    a.starts_at = start;
                }
                a.version = Some(based_on + 1);
            })
            .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_time_is_the_clinics_offset_on_that_day_across_both_changes() {
        let ny = "America/New_York";
        assert_eq!(
            local_start("2026-03-07", "09:00", ny).unwrap(),
            "2026-03-07T09:00:00-05:00"
        );
        assert_eq!(
            local_start("2026-03-09", "09:00", ny).unwrap(),
            "2026-03-09T09:00:00-04:00"
        );
        assert_eq!(
            local_start("2026-11-02", "09:00", ny).unwrap(),
            "2026-11-02T09:00:00-05:00"
        );
        assert!(local_start("2026-02-30", "09:00", ny).is_err());
        assert!(local_start("2026-03-07", "9am", ny).is_err());
    }

    #[test]
    fn the_nearest_cached_day_stands_in_for_a_today_not_cached() {
        let days = vec!["2026-12-07".to_owned(), "2026-12-01".to_owned()];
        assert_eq!(
            nearest("2026-11-23", days.clone()).as_deref(),
            Some("2026-12-01")
        );
        assert_eq!(nearest("2026-12-06", days).as_deref(), Some("2026-12-07"));
        assert_eq!(nearest("2026-12-06", Vec::new()), None);
    }

    #[test]
    fn today_is_the_clinics_day_not_utcs() {
        // 2026-11-24 03:00 UTC is still the 23rd in New York.
        let ms = 1_795_489_200_000;
        assert_eq!(today_in("UTC", ms).as_deref(), Some("2026-11-24"));
        assert_eq!(
            today_in("America/New_York", ms).as_deref(),
            Some("2026-11-23")
        );
    }
}
