//! `initial_sync_s`: a front desk's first sync of its days (yesterday to a week ahead) into a
//! new encrypted cache, through the real app core (its SQLCipher files, keychain, signed
//! audit events) against the real server over TLS on loopback. The clinic has 10,000
//! patients with 1,500 appointments in the window (`--quick`: 1,000 and 150), each with a
//! different patient. Against downloading the same answers without storing them: the same
//! requests in the same order, on a second session of the same user and workstation, each
//! body read whole and dropped.

use std::time::Instant;

use anyhow::Context;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{AppointmentList, SyncPage, UserInfo};
use clinicdesk_server::admin::seed_scale::{ScaleSeed, seed_clinics};
use clinicdesk_server::clinical::days;
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::secrets::random::hash_secret;
use clinicdesk_server::store::synthetic::SeededAppointment;
use clinicdesk_server::time::SystemClock;
use uuid::Uuid;

use crate::app_core::{enroll_in_and_sign_in, new_core};
use crate::audit::{Served, runtime, served};
use crate::metrics::Scale;
use crate::report::Metric;

/// The window the app keeps: from yesterday to this many days ahead.
const DAYS_AHEAD: i64 = 7;

fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // the appointments fill the real days ahead
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The clinic's window as `[start, end)` in UTC milliseconds, and its days.
async fn window(s: &Served, scope: &ClinicScope) -> anyhow::Result<(i64, i64, Vec<String>)> {
    let today = days::requested_day(&s.state.store, scope, None, now_ms()).await?;
    let first = today.date.yesterday()?;
    let mut dates = vec![first];
    for n in 0..DAYS_AHEAD {
        dates.push(today.date.checked_add(jiff::Span::new().days(n + 1))?);
    }
    let last = *dates.last().context("empty window")?;
    let (start, _) = days::day_bounds(&today.tz, first)?;
    let (_, end) = days::day_bounds(&today.tz, last)?;
    Ok((start, end, dates.iter().map(ToString::to_string).collect()))
}

/// Fills the window up to `total` appointments, a different patient each, spread evenly
/// between now and six days ahead (inside the window in every time zone).
async fn fill_window(
    s: &Served,
    scope: &ClinicScope,
    clinic_id: Uuid,
    total: usize,
) -> anyhow::Result<()> {
    let (start, end, _) = window(s, scope).await?;
    let clinic = clinic_id.to_string();
    let seeded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM appointments WHERE clinic_id = $1
         AND starts_at_ms >= $2 AND starts_at_ms < $3",
    )
    .bind(&clinic)
    .bind(start)
    .bind(end)
    .fetch_one(&s.db)
    .await?;
    let patients: Vec<String> =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 ORDER BY id")
            .bind(&clinic)
            .fetch_all(&s.db)
            .await?;
    let clinicians: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE clinic_id = $1 AND username LIKE 'clinician%' ORDER BY id",
    )
    .bind(&clinic)
    .fetch_all(&s.db)
    .await?;
    anyhow::ensure!(!clinicians.is_empty(), "no clinicians seeded");
    let more = total.saturating_sub(usize::try_from(seeded)?);
    let from = now_ms();
    let step = 6 * 86_400_000 / i64::try_from(more.max(1))?;
    let mut appointments = Vec::with_capacity(more);
    for k in 0..more {
        // 7,919 is prime, so the first `len` of these are all different patients.
        let patient = &patients[(k * 7_919) % patients.len()];
        appointments.push(SeededAppointment {
            id: Uuid::now_v7(),
            patient_id: Uuid::parse_str(patient)?,
            practitioner_id: Uuid::parse_str(&clinicians[k % clinicians.len()])?,
            starts_at_ms: from + i64::try_from(k)? * step,
            duration_mins: 15,
            reason: "Follow-up visit".into(),
            status: "booked",
        });
    }
    s.state
        .store
        .insert_synthetic(scope, &[], &[], &appointments)
        .await?;
    Ok(())
}

/// A second session for the user signed in on the core's workstation, as if they had
/// signed in again there: its token, for the baseline's requests.
async fn second_session(s: &Served, clinic_id: Uuid) -> anyhow::Result<String> {
    let (user_id, device_id): (String, String) = sqlx::query_as(
        "SELECT s.user_id, s.device_id FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.clinic_id = $1 AND u.username = 'frontdesk'",
    )
    .bind(clinic_id.to_string())
    .fetch_one(&s.db)
    .await?;
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let user = UserInfo {
        user_id: Uuid::parse_str(&user_id)?,
        username: "frontdesk".into(),
        display_name: String::new(),
        role: Role::FrontDesk,
        clinic_id,
    };
    s.state
        .store
        .insert_session(
            &hash_secret(&token),
            &user,
            Uuid::parse_str(&device_id)?,
            now_ms(),
            false,
        )
        .await?;
    Ok(token)
}

/// The sync's requests, each body read whole and dropped: the window's days, then the
/// pages of their patients. Returns the bytes downloaded.
async fn download(s: &Served, token: &str, dates: &[String]) -> anyhow::Result<u64> {
    let get = |path: String| {
        s.client
            .get(format!("{}{path}", s.url))
            .bearer_auth(token)
            .send()
    };
    let mut bytes = 0;
    for date in dates {
        let body = get(format!("/v1/appointments?date={date}"))
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        bytes += body.len() as u64;
        let _: AppointmentList = serde_json::from_slice(&body)?;
    }
    let (from, to) = (
        dates.first().context("no days")?,
        dates.last().context("no days")?,
    );
    let mut after: Option<Uuid> = None;
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let body = get(format!("/v1/sync/patients?from={from}&to={to}{cursor}"))
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        bytes += body.len() as u64;
        let page: SyncPage = serde_json::from_slice(&body)?;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(bytes),
        }
    }
}

pub fn initial_sync_s(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let (patients, appointments) = (scale.pick(1_000, 10_000), scale.pick(150, 1_500));
    let dir = tempfile::tempdir()?;
    runtime()?.block_on(async {
        let s = served().await?;
        let spec = ScaleSeed {
            clinics: 1,
            patients_per_clinic: u32::try_from(patients)?,
            seed: 23,
        };
        let seeded = seed_clinics(
            &s.state.store,
            &Console::operator(),
            &SystemClock,
            spec,
            &mut |_, _| {},
        )
        .await?;
        let clinic_id = seeded.first_clinic_id.context("no clinic seeded")?;
        let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
        fill_window(&s, &scope, clinic_id, appointments).await?;

        let core = new_core(&s, dir.path(), None)?;
        enroll_in_and_sign_in(&core, &s, clinic_id, "frontdesk", &seeded.password).await?;
        let started = Instant::now();
        let synced = core.sync_days().await?;
        let sync_s = started.elapsed().as_secs_f64();
        println!("  the sync took {sync_s:.2} s");
        anyhow::ensure!(
            synced.patients >= u64::try_from(appointments)? * 9 / 10,
            "the sync kept {} patients of {appointments} appointments",
            synced.patients
        );

        let token = second_session(&s, clinic_id).await?;
        let (_, _, dates) = window(&s, &scope).await?;
        let started = Instant::now();
        let bytes = download(&s, &token, &dates).await?;
        let download_s = started.elapsed().as_secs_f64();
        println!(
            "  {} days, {} patients kept; {:.1} MB downloaded",
            synced.days,
            synced.patients,
            bytes as f64 / 1e6
        );
        let met = sync_s <= 10.0 && sync_s <= 3.0 * download_s;
        Ok(vec![Metric::new(
            "initial_sync_s",
            sync_s,
            "s",
            "download_only_s",
            download_s,
            "<= 10 and <= 3x",
            met,
        )])
    })
}
