//! The offline copy of the user's days: after an online sign-in (and then every hour), the
//! schedule from yesterday to a week ahead (a clinician's own appointments only) and the
//! charts, registration records and coverages of those patients, as the server cuts them for the
//! user's role and care teams. So a workstation opened offline in the morning has the
//! day's patients. The patients come a page at a time (`/v1/sync/patients`, a cursor over
//! the window): a front desk's week is a few requests, not three per patient. Each day and
//! patient pulled is recorded as a view (route `sync`) before it is kept, a page's views in
//! one outbox commit and its patients in one cache transaction. A complete pass then evicts what left the window: other days, and patients no
//! longer in it (a past appointment, a chart re-read without the clinical summary after the
//! clinician left the care team), except those with changes still queued. A lock stops it.
//! After each pass the server is told what the copy holds (counts), for the admins' list.

use std::collections::BTreeSet;

use clinicdesk_protocol::app::SyncProgress;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::policy::{Permission, Role, allows};
use clinicdesk_protocol::wire::{AppointmentList, CoverageList, OfflineCopyReport, SyncedPatient};
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::cache;
use crate::local::changes;
use crate::local::outbox::Draft;
use crate::net::client::ServerClient;

/// The window: from this many days before today to this many after.
const DAYS_BEFORE: i64 = 1;
const DAYS_AFTER: i64 = 7;

/// What one pass kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    pub days: u64,
    pub patients: u64,
}

fn view(
    resource_type: &'static str,
    id: String,
    patient: Option<Uuid>,
    fields: Vec<String>,
) -> Draft {
    Draft {
        action: AuditAction::View,
        resource_type,
        resource_id: id,
        patient_id: patient,
        fields,
        offline: false,
        route: "sync",
        break_glass: None,
    }
}

/// The days of the window around `today` (`YYYY-MM-DD`).
fn window(today: &str) -> Result<Vec<String>, AppError> {
    let today: jiff::civil::Date = today.parse().map_err(|_| AppError::Internal("day"))?;
    (-DAYS_BEFORE..=DAYS_AFTER)
        .map(|n| {
            today
                .checked_add(jiff::Span::new().days(n))
                .map(|d| d.to_string())
                .map_err(|_| AppError::Internal("day"))
        })
        .collect()
}

/// How often an online session refreshes its copy.
const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Core {
    /// A pass if the session is online and has had none yet, or none for [`EVERY`].
    pub async fn sync_if_due(&self) -> Result<Option<Synced>, AppError> {
        let (token, generation) = self.session_snapshot()?;
        if token.is_none() {
            return Ok(None);
        }
        let now = self.clock.monotonic();
        let due = match *self
            .last_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((g, at)) => g != generation || now.saturating_duration_since(at) >= EVERY,
            None => true,
        };
        if !due {
            return Ok(None);
        }
        let synced = self.sync_days().await?;
        *self
            .last_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((generation, now));
        Ok(Some(synced))
    }

    /// Shows how far the pass is (for the status bar), or that none runs.
    fn note_sync(&self, progress: Option<SyncProgress>) {
        *self
            .sync_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = progress;
    }

    pub(in crate::core) fn sync_progress(&self) -> Option<SyncProgress> {
        *self
            .sync_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One pass over the window (see the module). Online only (`Unreachable` otherwise);
    /// roles that read no schedule have nothing to pull.
    pub async fn sync_days(&self) -> Result<Synced, AppError> {
        let _one = self.syncing.lock().await;
        let result = self.sync_pass().await;
        self.note_sync(None);
        match &result {
            Ok(_) => {
                if let Err(e) = self.report_copy().await {
                    tracing::debug!(code = %e.to_api().code, "offline copy not reported");
                }
            }
            Err(e) => tracing::debug!(code = %e.to_api().code, "offline copy not refreshed"),
        }
        result
    }

    /// Tells the server what the copy now holds (counts of patients and days, no names),
    /// for the admins' list of workstations. A failure leaves the last report standing.
    async fn report_copy(&self) -> Result<(), AppError> {
        let (token, generation) = self.session_snapshot()?;
        let Some(token) = token else {
            return Ok(());
        };
        let (patients, days) = self.with_unlocked(generation, |u, _| {
            let (patients, days, _) = u.cache.holdings()?;
            Ok((patients, days))
        })?;
        let report = OfflineCopyReport { patients, days };
        self.ask(generation, &token, |c, t| async move {
            c.report_offline_copy(&t, &report).await
        })
        .await
    }

    async fn sync_pass(&self) -> Result<Synced, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let Some(token) = token else {
            return Err(AppError::Unreachable);
        };
        let user = self.with_unlocked(generation, |u, _| Ok(u.user.clone()))?;
        if !allows(user.role, Permission::ReadSchedule) {
            return Ok(Synced::default());
        }
        let today = self.pull_day(generation, &token, None).await?;
        let days = window(&today.date)?;
        let total_days = u64::try_from(days.len()).unwrap_or(u64::MAX);
        let mut patients = BTreeSet::new();
        let mut done = 0;
        for day in &days {
            self.note_sync(Some(SyncProgress {
                done,
                total: total_days,
            }));
            let mut list = if *day == today.date {
                today.clone()
            } else {
                self.pull_day(generation, &token, Some(day)).await?
            };
            if user.role == Role::Clinician {
                list.appointments
                    .retain(|a| a.practitioner_id == Some(user.user_id));
            }
            patients.extend(list.appointments.iter().map(|a| a.patient_id));
            self.keep_day(generation, &list)?;
            done += 1;
        }
        let total = total_days + u64::try_from(patients.len()).unwrap_or(u64::MAX);
        let (from, to) = match (days.first(), days.last()) {
            (Some(from), Some(to)) => (from.clone(), to.clone()),
            _ => return Err(AppError::Internal("day")),
        };
        let mut after = None;
        loop {
            self.note_sync(Some(SyncProgress {
                done: done.min(total),
                total,
            }));
            let (from, to) = (from.clone(), to.clone());
            let page = self
                .ask(generation, &token, |c, t| async move {
                    c.sync_patients(&t, &from, &to, after).await
                })
                .await?;
            done += u64::try_from(page.patients.len()).unwrap_or(u64::MAX);
            // Booked since the day lists were read: kept, and not evicted below.
            patients.extend(page.patients.iter().map(|p| p.chart.id));
            self.keep_patients(generation, &page.patients)?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.evict(generation, &days, &patients)?;
        Ok(Synced {
            days: total_days,
            patients: u64::try_from(patients.len()).unwrap_or(u64::MAX),
        })
    }

    /// Asks the server with the pass's token. A refusal counts for the session the pass
    /// belongs to only while it is the current one: a pass still running when the user
    /// switched must not lock the next user out ([`Core::refused_in`]).
    async fn ask<T, F, Fut>(
        &self,
        generation: u64,
        token: &SecretString,
        request: F,
    ) -> Result<T, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        match self.fetch(Some(token.clone()), request).await {
            Ok(value) => Ok(value),
            Err(e) => Err(self.refused_in(generation, e).await),
        }
    }

    /// A day's schedule from the server (today's when `None`).
    async fn pull_day(
        &self,
        generation: u64,
        token: &SecretString,
        day: Option<&str>,
    ) -> Result<AppointmentList, AppError> {
        let day = day.map(str::to_owned);
        self.ask(generation, token, |c, t| async move {
            c.appointments(&t, day.as_deref()).await
        })
        .await
    }

    /// Records the day's view, then keeps it.
    fn keep_day(&self, generation: u64, list: &AppointmentList) -> Result<(), AppError> {
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let fields = ["starts_at", "patient_name", "reason"]
                .map(str::to_owned)
                .to_vec();
            proof.device().record(
                &u.key,
                &u.user,
                view("Schedule", list.date.clone(), None, fields),
                now,
            )?;
            u.cache
                .transaction(|tx| cache::put_appointments(tx, list, now))?;
            Ok(())
        })?;
        self.device.want_upload();
        Ok(())
    }

    /// Records one view per patient of a page (the chart's fields, the record's and the
    /// coverages'), in one outbox commit, then keeps them all in one cache transaction.
    fn keep_patients(&self, generation: u64, page: &[SyncedPatient]) -> Result<(), AppError> {
        if page.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let drafts = page
                .iter()
                .map(|p| {
                    let id = p.chart.id;
                    view("Patient", id.to_string(), Some(id), p.disclosed_fields())
                })
                .collect();
            proof.device().record_all(&u.key, &u.user, drafts, now)?;
            u.cache.transaction(|tx| {
                for p in page {
                    cache::put_patient(tx, &p.chart, now)?;
                    if let Some(coverages) = &p.coverages {
                        let list = CoverageList {
                            patient_id: p.chart.id,
                            coverages: coverages.clone(),
                        };
                        cache::put_coverages(tx, &list, now)?;
                    }
                    if let Some(record) = &p.record {
                        cache::put_patient_record(tx, record, now)?;
                    }
                }
                Ok(())
            })?;
            Ok(())
        })?;
        self.device.want_upload();
        Ok(())
    }

    /// Drops the days outside the window and the patients not in it (unless a change of
    /// theirs is still queued here).
    fn evict(
        &self,
        generation: u64,
        days: &[String],
        patients: &BTreeSet<Uuid>,
    ) -> Result<(), AppError> {
        self.with_unlocked(generation, |u, _| {
            u.cache.transaction(|tx| {
                let mut keep = patients.clone();
                keep.extend(changes::all(tx)?.iter().map(|q| q.change.patient_id()));
                cache::evict_outside(tx, days, &keep)
            })?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_runs_from_yesterday_to_a_week_ahead_across_a_month() {
        let days = window("2026-11-29").unwrap();
        assert_eq!(days.len(), 9);
        assert_eq!(days.first().map(String::as_str), Some("2026-11-28"));
        assert_eq!(days.last().map(String::as_str), Some("2026-12-06"));
    }
}
