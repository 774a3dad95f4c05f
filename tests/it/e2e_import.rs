//! A new clinic's admin brings its records in through the real app (WebDriver): the
//! `Patient` lines of a FHIR R4 export (the server's Synthea test export of 120 patients,
//! five times over, so the app sends it in two parts the server takes) with one unusable
//! line. Each patient arrives once; the unusable line is named by its file and place in
//! it; importing the file again adds nothing. Then a practice's file of a practitioner, a
//! patient, a coverage and an appointment: the practitioner lands in the directory below
//! the import, the appointment waits until the admin links them to the clinician's
//! account, and the same file imported again brings it in.

use std::time::{Duration, Instant};

use clinicdesk_tests::{ServerProcess, workspace_root};
use fantoccini::{Client, Locator};

use crate::e2e_desktop::{ONE_APP, Shots, click, launch_signed_in, wait_for};

/// Chooses `path` in the import's file input, imports it, and waits for the end: the
/// counts line, once the screen says it is done.
async fn import(client: &Client, path: &std::path::Path) -> String {
    let input = wait_for(client, Locator::Id("import-file"), 20, "the file input").await;
    // The input takes several files: keys add to its choice, so the last one goes first.
    input.clear().await.unwrap();
    input.send_keys(&path.to_string_lossy()).await.unwrap();
    click(client, "import-start").await;
    // The last import's result leaves the screen as this one starts.
    if let Ok(state) = client.find(Locator::Id("import-state")).await {
        assert_ne!(
            state.text().await.unwrap_or_default(),
            "Done.",
            "a stale result"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = match client.find(Locator::Id("import-state")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if state == "Done." {
            break;
        }
        assert!(state != "Stopped.", "the import stopped");
        assert!(
            Instant::now() < deadline,
            "the import never ended: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client
        .find(Locator::Id("import-counts"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn patients(server: &ServerProcess) -> i64 {
    server
        .db()
        .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_imports_the_clinics_patients_from_a_fhir_export() {
    let _one = ONE_APP.lock().await;
    let server = ServerProcess::start();
    let export = std::fs::read_to_string(
        workspace_root().join("server/tests/data/synthea-100-patients/Patient.000.ndjson"),
    )
    .unwrap();
    let unique = i64::try_from(export.lines().filter(|l| !l.trim().is_empty()).count()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Patient.ndjson");
    // Five times over (about 2 MB: more than the server takes at once), then a line that
    // is not a resource.
    std::fs::write(&path, format!("{}not a resource\n", export.repeat(5))).unwrap();
    let before = patients(&server);

    let (_driver, client, _app_dir) = launch_signed_in(
        &server,
        &server.seed.enrollment_code,
        "E2E office",
        "admin",
        600,
    )
    .await;
    let mut shots = Shots::new("import");
    click(&client, "tab-import").await;
    let counts = import(&client, &path).await;
    assert_eq!(
        counts,
        format!(
            "Imported {unique} · already here {} · skipped 1",
            4 * unique
        )
    );
    let skipped = wait_for(&client, Locator::Css("tr.import-skip"), 20, "the skip")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        skipped.starts_with(&format!("Patient.ndjson line {}", 5 * unique + 1)),
        "{skipped}"
    );
    assert_eq!(patients(&server) - before, unique, "each patient once");
    shots.take(&client, "import-done").await;

    // Again: nothing new.
    let again = import(&client, &path).await;
    assert_eq!(
        again,
        format!("Imported 0 · already here {} · skipped 1", 5 * unique)
    );
    assert_eq!(patients(&server) - before, unique);

    // A practice's records in one file, the appointment before what it refers to.
    let practice = dir.path().join("practice.ndjson");
    std::fs::write(&practice, PRACTICE).unwrap();
    let counts = import(&client, &practice).await;
    assert_eq!(counts, "Imported 3 · already here 0 · skipped 1");
    let skipped = wait_for(&client, Locator::Css("tr.import-skip"), 20, "the skip")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        skipped.contains("Appointment/e2e-a1") && skipped.contains("not linked to an account"),
        "{skipped}"
    );
    let entry = wait_for(
        &client,
        Locator::Css("tr.directory-entry"),
        20,
        "the directory's entry",
    )
    .await;
    assert!(
        entry.text().await.unwrap().contains("Dr. Dana Oldsys"),
        "the practitioner, by name"
    );
    entry
        .find(Locator::Css("select"))
        .await
        .unwrap()
        .select_by_label("Dr. Sam Chart (demo)")
        .await
        .unwrap();
    entry
        .find(Locator::Css("button.link-entry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &client,
        Locator::Css("tr.directory-entry.linked"),
        20,
        "the entry linked",
    )
    .await;
    shots.take(&client, "import-directory-linked").await;
    let again = import(&client, &practice).await;
    assert_eq!(again, "Imported 1 · already here 3 · skipped 0");
    let booked: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM appointments a JOIN users u ON u.id = a.practitioner_id
             WHERE u.username = 'clinician' AND a.reason = 'Synthetic follow-up'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(booked, 1, "on the linked clinician's schedule");
    client.close().await.unwrap();
}

/// A practitioner, a patient with a coverage, and their appointment (synthetic).
const PRACTICE: &str = concat!(
    r#"{"resourceType":"Appointment","id":"e2e-a1","status":"booked","description":"Synthetic follow-up","start":"2027-03-01T09:00:00Z","minutesDuration":20,"participant":[{"actor":{"reference":"Patient/e2e-p1"}},{"actor":{"reference":"Practitioner/e2e-d1"}}]}"#,
    "\n",
    r#"{"resourceType":"Coverage","id":"e2e-c1","status":"active","subscriberId":"SYN-1","beneficiary":{"reference":"Patient/e2e-p1"},"payor":[{"display":"Synthetic Mutual"}]}"#,
    "\n",
    r#"{"resourceType":"Practitioner","id":"e2e-d1","name":[{"family":"Oldsys","given":["Dana"],"prefix":["Dr."]}]}"#,
    "\n",
    r#"{"resourceType":"Patient","id":"e2e-p1","name":[{"family":"Importova","given":["Synthia"]}],"birthDate":"1980-02-03"}"#,
    "\n",
);
