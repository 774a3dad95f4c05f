//! What a clinician's offline copy holds follows who they are now, through the real app
//! (WebDriver) against the real server: a chart kept while they were on the patient's care
//! team shows no clinical content offline once the front desk takes them off it (their next
//! online session re-read it), while their other patients' charts keep theirs; and once an
//! admin makes them billing, nothing of the copy made as a clinician can be read offline.

use std::time::{Duration, Instant};

use clinicdesk_protocol::policy::Role;
use clinicdesk_tests::{ServerProcess, enrolled_core};
use fantoccini::{Client, Locator};

use crate::e2e_desktop::{
    ONE_APP, Shots, click, launch_signed_in, lock_and_unlock, open_from_day, type_into,
    unlock_offline, wait_for,
};

fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // compared with the server's clock, the system's
    let now = std::time::SystemTime::now();
    i64::try_from(
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Waits until the app has reported its copy after `since_ms`: a pass over the user's days
/// ran to its end (eviction included) after that instant.
async fn copy_reported_after(server: &ServerProcess, user: uuid::Uuid, since_ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let at: Option<i64> = server
            .db()
            .query_row(
                "SELECT max(reported_at_ms) FROM offline_copies WHERE user_id = ?1",
                [user.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        if at.is_some_and(|at| at > since_ms) {
            return;
        }
        assert!(Instant::now() < deadline, "the copy was never refreshed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Back from a chart to the day.
async fn back_to_day(client: &Client) {
    click(client, "back-to-schedule").await;
    wait_for(client, Locator::Css("button.open-patient"), 20, "the day").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinicians_offline_copy_follows_care_team_and_role_changes() {
    let _one = ONE_APP.lock().await;
    let mut server = ServerProcess::start();
    // The office's workstation (an app core of its own) takes the seed's code; its admin
    // issues the exam room's.
    let office_dir = tempfile::tempdir().unwrap();
    let office = enrolled_core(&server, office_dir.path(), "Office").await;
    let admin = server.seed.password("admin").to_owned();
    server.sign_in(&office, "admin", &admin).await.unwrap();
    let code = office
        .issue_enrollment_code()
        .await
        .unwrap()
        .enrollment_code;
    office.sign_out().unwrap();
    let clinician = server.user_id("clinician");
    let password = server.seed.password("clinician").to_owned();
    let taken_off: uuid::Uuid = server
        .db()
        .query_row(
            "SELECT id FROM patients WHERE name = 'Testa Quillfeather'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap()
        .parse()
        .unwrap();

    let (_driver, client, _app_dir) =
        launch_signed_in(&server, code.expose(), "E2E exam room", "clinician", 600).await;
    let mut shots = Shots::new("offline-scope");
    wait_for(&client, Locator::Css("button.open-patient"), 20, "the day").await;
    // Online, on the care team: the clinical summary.
    open_from_day(&client, "Quillfeather").await;
    wait_for(&client, Locator::Id("patient-allergies"), 20, "the summary").await;
    back_to_day(&client).await;

    // The front desk takes the clinician off Quillfeather's care team.
    let frontdesk = server.seed.password("frontdesk").to_owned();
    server
        .sign_in(&office, "frontdesk", &frontdesk)
        .await
        .unwrap();
    office
        .remove_from_care_team(taken_off, clinician)
        .await
        .unwrap();
    office.sign_out().unwrap();

    // The clinician's next online session refreshes the copy, without opening the chart.
    let before = now_ms();
    lock_and_unlock(&client, &password).await;
    copy_reported_after(&server, clinician, before).await;

    // Offline: that chart has no clinical content (and the way to it needs the server);
    // another care-team patient's still has theirs.
    unlock_offline(&client, &mut server, &password).await;
    open_from_day(&client, "Quillfeather").await;
    wait_for(
        &client,
        Locator::Id("outside-care-team"),
        20,
        "outside the care team",
    )
    .await;
    assert!(
        client.find(Locator::Id("patient-allergies")).await.is_err(),
        "no clinical content off the care team, offline"
    );
    shots.take(&client, "off-the-care-team-offline").await;
    back_to_day(&client).await;
    open_from_day(&client, "Brightwater").await;
    wait_for(
        &client,
        Locator::Id("patient-allergies"),
        20,
        "the summary of a care-team patient, offline",
    )
    .await;
    back_to_day(&client).await;

    // An admin makes the clinician billing. Their next online session deletes the copy
    // made as a clinician: offline, not even the care-team patient's chart is there.
    server.restart();
    server.sign_in(&office, "admin", &admin).await.unwrap();
    office.change_role(clinician, Role::Billing).await.unwrap();
    office.sign_out().unwrap();
    // The role change ended the clinician's sessions: the unlock asks the second factor.
    lock_and_unlock(&client, &password).await;
    type_into(&client, "mfa-code", &server.authenticator.code("clinician")).await;
    click(&client, "mfa-submit").await;
    wait_for(
        &client,
        Locator::Css("tr.day-patient"),
        30,
        "billing's desk",
    )
    .await;
    unlock_offline(&client, &mut server, &password).await;
    // Offline, the day's list says it needs the server, and stays so while the finder works.
    wait_for(
        &client,
        Locator::Id("day-patients-unavailable"),
        20,
        "the list's offline state",
    )
    .await;
    assert!(
        client.find(Locator::Id("schedule-list")).await.is_err(),
        "billing has no schedule"
    );
    type_into(&client, "patient-query", "Brightwater").await;
    click(&client, "patient-search").await;
    wait_for(
        &client,
        Locator::Id("patient-no-match"),
        20,
        "no match in the copy",
    )
    .await;
    assert!(client.find(Locator::Id("patient-allergies")).await.is_err());
    assert!(
        client
            .find(Locator::Id("day-patients-unavailable"))
            .await
            .is_ok(),
        "the finder's answer leaves the list's state as it was"
    );
    shots.take(&client, "billing-offline").await;
    client.close().await.unwrap();
}
