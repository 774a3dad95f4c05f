//! Two workstations change the same patient's phone number, one of them offline, through
//! the real app (WebDriver) and a second app core: the change made offline meets the other
//! on the server as a conflict, is not applied over it and not dropped; the user sees both
//! values side by side, keeps theirs, and the record's history holds both versions (the
//! server's with the values, the chart's with who changed what, and why).

use std::time::{Duration, Instant};

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeState;
use clinicdesk_protocol::wire::PatientFields;
use clinicdesk_tests::{ServerProcess, enrolled_core};
use fantoccini::{Client, Locator};

use crate::e2e_desktop::{
    ONE_APP, Shots, alt, click, launch_signed_in, lock_and_unlock, open_from_day, type_into,
    unlock_offline, wait_for,
};

/// The demo seed's patient both desks change.
const PATIENT: &str = "Testa Quillfeather";
const MINE: &str = "555-0177";
const THEIRS: &str = "555-0188";

/// Opens `name`'s chart from the day's schedule, with the front desk's actions.
async fn open_chart(client: &Client, name: &str) {
    open_from_day(client, name).await;
    wait_for(client, Locator::Id("edit-patient-open"), 20, "the chart").await;
}

/// The value of the input `id` once it is not empty.
async fn value_of(client: &Client, id: &str) -> String {
    let field = wait_for(client, Locator::Id(id), 20, id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = field.prop("value").await.unwrap().unwrap_or_default();
        if !value.is_empty() {
            return value;
        }
        assert!(Instant::now() < deadline, "{id} stayed empty");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The unsent changes (Alt+U), until one of them waits for the user's review.
async fn review_button(client: &Client) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        alt(client, 'u').await;
        wait_for(client, Locator::Id("unsent-changes"), 20, "unsent changes").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(button) = client.find(Locator::Css("button.review-change")).await {
            return button;
        }
        assert!(
            Instant::now() < deadline,
            "the change never came back in conflict"
        );
        click(client, "changes-back").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_changed_offline_meets_another_desks_change_and_the_user_picks_field_by_field() {
    let _one = ONE_APP.lock().await;
    let mut server = ServerProcess::start();
    // The second workstation (an app core of its own) takes the seed's code; its admin
    // issues the first workstation's.
    let b_dir = tempfile::tempdir().unwrap();
    let b = enrolled_core(&server, b_dir.path(), "Front desk 2").await;
    server
        .sign_in(&b, "admin", server.seed.password("admin"))
        .await
        .unwrap();
    let code = b.issue_enrollment_code().await.unwrap().enrollment_code;
    b.sign_out().unwrap();
    let patient = server
        .db()
        .query_row("SELECT id FROM patients WHERE name = ?1", [PATIENT], |r| {
            r.get::<_, String>(0)
        })
        .unwrap()
        .parse()
        .unwrap();

    let (_driver, client, _app_dir) =
        launch_signed_in(&server, code.expose(), "E2E front desk 1", "frontdesk", 600).await;
    let mut shots = Shots::new("conflict");
    let password = server.seed.password("frontdesk").to_owned();
    // Online, the desk reads the patient's details (this workstation keeps them).
    open_chart(&client, "Quillfeather").await;
    click(&client, "edit-patient-open").await;
    let before = value_of(&client, "reg-phone").await;
    assert_ne!(before, MINE);
    click(&client, "edit-back").await;

    // The network goes; offline, this desk changes the phone.
    unlock_offline(&client, &mut server, &password).await;
    open_chart(&client, "Quillfeather").await;
    click(&client, "edit-patient-open").await;
    assert_eq!(value_of(&client, "reg-phone").await, before);
    type_into(&client, "reg-phone", MINE).await;
    type_into(&client, "edit-reason", "New number given at the desk").await;
    click(&client, "edit-submit").await;
    wait_for(&client, Locator::Id("unsent-changes-open"), 20, "the count").await;

    // Meanwhile the other desk, online, changes the same phone.
    server.restart();
    server.sign_in(&b, "frontdesk", &password).await.unwrap();
    let seen = b.patient_record(patient).await.unwrap();
    let theirs = PatientFields {
        phone: Some(THEIRS.into()),
        ..PatientFields::default()
    };
    let sent = b
        .update_patient(patient, seen.version, theirs, Phi::new(String::new()))
        .await
        .unwrap();
    assert_eq!(
        sent.state,
        ChangeState::Sent {
            version: seen.version + 1
        }
    );
    b.sign_out().unwrap();

    // This desk is back online: its change is not applied over the other's, and waits.
    lock_and_unlock(&client, &password).await;
    wait_for(&client, Locator::Css("button.open-patient"), 30, "the day").await;
    review_button(&client).await.click().await.unwrap();
    let row = wait_for(
        &client,
        Locator::Css("#conflict-fields tr.conflict-field[data-field='phone']"),
        20,
        "the phone side by side",
    )
    .await;
    // Only the phone: saving the form changed nothing else (the address it shows in part
    // stays as it was).
    let fields = client
        .find_all(Locator::Css("#conflict-fields tr.conflict-field"))
        .await
        .unwrap();
    assert_eq!(fields.len(), 1, "only the phone is in conflict");
    let cell = |css: &'static str| {
        let row = row.clone();
        async move {
            row.find(Locator::Css(css))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        (cell("td.mine").await, cell("td.theirs").await),
        (MINE.to_owned(), THEIRS.to_owned())
    );
    shots.take(&client, "conflict").await;
    // The user keeps their number (ticked by default) and saves.
    assert!(
        client
            .find(Locator::Id("keep-phone"))
            .await
            .unwrap()
            .prop("checked")
            .await
            .unwrap()
            .as_deref()
            == Some("true")
    );
    click(&client, "conflict-settle").await;

    // Stored once on top of the other desk's; the history holds both, and shows them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let phones = loop {
        let phones: Vec<String> = {
            let db = server.db();
            let mut stmt = db
                .prepare(
                    "SELECT json_extract(body, '$.phone') FROM record_versions
                     WHERE record_id = ?1 ORDER BY version",
                )
                .unwrap();
            stmt.query_map([patient.to_string()], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        if phones.last().map(String::as_str) == Some(MINE) {
            break phones;
        }
        assert!(
            Instant::now() < deadline,
            "the choice never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let tail: Vec<&str> = phones
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, [THEIRS, MINE]);
    assert_eq!(phones.iter().filter(|p| *p == MINE).count(), 1, "once");
    let country: String = server
        .db()
        .query_row(
            "SELECT json_extract(body, '$.address.country') FROM record_versions
             WHERE record_id = ?1 ORDER BY version DESC LIMIT 1",
            [patient.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(country, "US", "the address the form does not show is kept");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .find(Locator::Id("unsent-changes-open"))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the change still counts as unsent"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    alt(&client, 't').await;
    open_chart(&client, "Quillfeather").await;
    click(&client, "history-open").await;
    // Newest first: this desk's phone with its reason, then the other desk's phone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut rows = Vec::new();
        for row in client
            .find_all(Locator::Css("#history-list tr.history-row"))
            .await
            .unwrap()
        {
            rows.push(row.text().await.unwrap_or_default());
        }
        if rows.len() >= 2 {
            assert!(
                rows[0].contains("phone")
                    && !rows[0].contains("address")
                    && rows[0].contains("New number given at the desk"),
                "{rows:?}"
            );
            assert!(rows[1].contains("phone"), "{rows:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the history lacks a version: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shots.take(&client, "history-both").await;
    client.close().await.unwrap();
}
