//! Tenant isolation at scale: 200 clinics of synthetic data (staff, patients, appointments,
//! a workstation and an uploaded audit event each). Users of some clinics call every list
//! route: no id of another clinic's row appears anywhere in any answer. A user of one clinic
//! calls every route that takes an id with the ids of all 199 others: each answers 404, as
//! for an id that does not exist, and changes nothing. Runs on both legs (on PostgreSQL,
//! row-level security stands behind the filters).

use std::collections::HashMap;

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::policy::{self, Access, ROUTES, Role};
use clinicdesk_server::admin::seed::{SeedReport, SharedPassword, seed_clinic_sharing};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use crate::audit_log::{event, sign};
use crate::harness::{TestDevice, TestServer, acceptable_body};

const CLINICS: u128 = 200;
/// Clinics whose staff sign in and read every list route.
const OBSERVERS: usize = 6;

fn clinic_id(i: u128) -> Uuid {
    Uuid::from_u128(0x1500_0000 + i)
}

/// A stored row: its clinic and what kind of id it is (a route parameter's name).
struct Owned {
    clinic: Uuid,
    kind: String,
}

/// Every id-bearing row of every clinic (as the database owner sees it).
async fn owners(owner: &sqlx::AnyPool) -> HashMap<Uuid, Owned> {
    let rows = sqlx::query(
        "SELECT id, clinic_id, 'patient_id' FROM patients
         UNION ALL SELECT id, clinic_id, 'appointment_id' FROM appointments
         UNION ALL SELECT id, clinic_id, 'coverage_id' FROM coverages
         UNION ALL SELECT id, clinic_id, 'user_id' FROM users WHERE role <> 'clinician'
         UNION ALL SELECT id, clinic_id, 'practitioner_id' FROM users WHERE role = 'clinician'
         UNION ALL SELECT id, clinic_id, 'device_id' FROM devices
         UNION ALL SELECT id, clinic_id, 'event_id' FROM audit_events
         UNION ALL SELECT id, clinic_id, 'grant_id' FROM break_glass_grants
         UNION ALL SELECT id, clinic_id, 'import_id' FROM import_jobs
         UNION ALL SELECT id, clinic_id, 'entry_id' FROM practitioner_directory
         UNION ALL SELECT id, id, 'clinic' FROM clinics",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let owned = Owned {
                clinic: r.get::<String, _>(1).parse().unwrap(),
                kind: r.get(2),
            };
            (r.get::<String, _>(0).parse().unwrap(), owned)
        })
        .collect()
}

/// Every UUID written anywhere in a response body (JSON, CSV, JSON Lines alike).
fn uuids_in(text: &str) -> Vec<Uuid> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|t| t.len() == 36)
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// One request on `client` (one TLS connection reused for all of them).
async fn call(
    (server, client): (&TestServer, &reqwest::Client),
    method: &str,
    path: &str,
    token: &str,
) -> (u16, String) {
    let url = format!("{}{path}", server.url);
    let rb = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&acceptable_body(path)),
        "PATCH" => client
            .patch(url)
            .header("If-Match", "\"0\"")
            .json(&acceptable_body(path)),
        "PUT" => client
            .put(url)
            .header("If-Match", "\"1\"")
            .json(&acceptable_body(path)),
        other => panic!("method {other}"),
    };
    let resp = rb.bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The GET routes without ids, with the queries that make them answer with data.
fn list_paths() -> Vec<(Access, String)> {
    let mut out = Vec::new();
    for rule in ROUTES
        .iter()
        .filter(|r| r.method == "GET" && !r.path.contains('{'))
        .filter(|r| matches!(r.access, Access::Session(_) | Access::AnySession))
    {
        match rule.path {
            "/v1/audit/export" => {
                for format in ["csv", "jsonl", "fhir"] {
                    out.push((rule.access, format!("{}?format={format}", rule.path)));
                }
            }
            "/v1/audit/consistency" => {
                out.push((rule.access, format!("{}?old_size=1&new_size=2", rule.path)));
            }
            // Every seeded record number starts so.
            "/v1/patients" => out.push((rule.access, format!("{}?q=MRN-1", rule.path))),
            path => out.push((rule.access, path.to_owned())),
        }
    }
    out
}

fn allowed(access: Access, role: Role) -> bool {
    match access {
        Access::Session(permission) => policy::allows(role, permission),
        Access::AnySession => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clinics_never_see_each_others_rows() {
    let server = TestServer::start().await;
    let client = server.client();
    let at = (&server, &client);
    let password = SharedPassword::new().unwrap();
    let mut clinics: Vec<(SeedReport, TestDevice)> = Vec::new();
    for i in 0..CLINICS {
        let report = seed_clinic_sharing(
            &server.store,
            &server.clock,
            clinic_id(i),
            &format!("Clinic {i}"),
            &password,
        )
        .await
        .unwrap();
        let device = TestDevice::enroll(&server, &report.enrollment_code).await;
        clinics.push((report, device));
    }
    // One signed workstation event per clinic, about one of its own patients.
    let owner = server.owner_pool().await;
    for (report, device) in &clinics {
        let row = sqlx::query(
            "SELECT (SELECT id FROM users WHERE clinic_id = $1 AND username = 'clinician'),
                    (SELECT min(id) FROM patients WHERE clinic_id = $1)",
        )
        .bind(report.clinic_id.to_string())
        .fetch_one(&owner)
        .await
        .unwrap();
        let user: Uuid = row.get::<String, _>(0).parse().unwrap();
        let mut e = event(device, user, 1, Hash32::GENESIS);
        e.patient_id = Some(row.get::<String, _>(1).parse().unwrap());
        let (status, body) = server
            .post(
                "/v1/audit/batches",
                None,
                json!({ "device_id": device.id, "events": [sign(device, e)] }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // A break-glass grant waiting for review, and a finished import job, in each clinic.
    for (report, _) in &clinics {
        server.insert_grant(report.clinic_id).await;
        sqlx::query(
            "INSERT INTO import_jobs (id, clinic_id, started_by, status, total, done, report,
                 started_at_ms, updated_at_ms)
             SELECT $1, $2, id, 'done', 0, 0,
                 '{\"imported\":0,\"unchanged\":0,\"skipped\":[],\"not_imported\":[]}', 0, 0
             FROM users WHERE clinic_id = $2 AND username = 'admin'",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(report.clinic_id.to_string())
        .execute(&owner)
        .await
        .unwrap();
        // And a practitioner of its old system in its directory.
        sqlx::query(
            "INSERT INTO practitioner_directory (id, clinic_id, source_key, record, version)
             VALUES ($1, $2, 'Practitioner/d1',
                 '{\"name\":\"Dr. Probe\",\"npi\":\"\",\"active\":true,\"user_id\":null}', 1)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(report.clinic_id.to_string())
        .execute(&owner)
        .await
        .unwrap();
    }
    let owner_of = owners(&owner).await;
    let count = |clinic: Uuid| owner_of.values().filter(|o| o.clinic == clinic).count();
    assert!(
        (0..CLINICS).all(|i| count(clinic_id(i)) >= 10),
        "every clinic has its rows"
    );

    // Observers: every role of a few clinics reads every list route it may.
    let mut reads = 0;
    let mut sessions: Vec<(Uuid, Role, String)> = Vec::new();
    for (report, device) in clinics.iter().take(OBSERVERS) {
        for user in &report.users {
            let login = device
                .login(&server, &user.username, &password.password)
                .await;
            sessions.push((
                report.clinic_id,
                user.role,
                login.session_token.expose().to_owned(),
            ));
        }
    }
    for (clinic, role, token) in &sessions {
        // Views of a patient put a server event and its patient into the trail too.
        if *role == Role::Clinician {
            let own_patient = owner_of
                .iter()
                .find(|(_, o)| o.clinic == *clinic && o.kind == "patient_id")
                .map(|(id, _)| *id);
            if let Some(p) = own_patient {
                assert_eq!(
                    call(at, "GET", &format!("/v1/patients/{p}"), token).await.0,
                    200
                );
            }
        }
        // Rows of its own clinic this session was shown: the check below is only as good
        // as the answers carry rows, so each session must see some.
        let mut own_rows = 0;
        for (access, path) in list_paths() {
            if !allowed(access, *role) {
                continue;
            }
            let (status, body) = call(at, "GET", &path, token).await;
            assert!(status < 500, "{path}: {status}");
            for id in uuids_in(&body) {
                if let Some(o) = owner_of.get(&id) {
                    assert_eq!(
                        o.clinic, *clinic,
                        "{role:?} of {clinic} got a row of {} from {path}",
                        o.clinic
                    );
                    own_rows += 1;
                }
            }
            reads += 1;
        }
        assert!(
            own_rows >= 5,
            "{role:?} of {clinic} was shown only {own_rows} rows"
        );
    }
    assert!(reads >= OBSERVERS * 8, "only {reads} list reads");

    // One clinic's users with every other clinic's ids: 404 on every route, nothing changed.
    let (clinic, _, _) = &sessions[0];
    let mine: Vec<&(Uuid, Role, String)> =
        sessions.iter().filter(|(c, _, _)| c == clinic).collect();
    // One id of each kind from each other clinic.
    let mut theirs: HashMap<&str, HashMap<Uuid, Uuid>> = HashMap::new();
    for (id, o) in &owner_of {
        if o.clinic != *clinic {
            theirs
                .entry(o.kind.as_str())
                .or_default()
                .entry(o.clinic)
                .or_insert(*id);
        }
    }
    // Their care teams, which the front desk's POSTs below try to change.
    let their_care_teams = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM care_team WHERE clinic_id <> $1")
            .bind(clinic.to_string())
            .fetch_one(&owner)
            .await
            .unwrap()
    };
    let care_teams_before = their_care_teams().await;
    assert!(care_teams_before > 0);
    let mut probes = 0;
    for rule in ROUTES.iter().filter(|r| r.path.contains('{')) {
        let Some((_, _, token)) = mine.iter().find(|(_, role, _)| allowed(rule.access, *role))
        else {
            continue;
        };
        let names: Vec<&str> = [
            "patient_id",
            "device_id",
            "user_id",
            "event_id",
            "grant_id",
            "appointment_id",
            "coverage_id",
            "practitioner_id",
            "import_id",
            "entry_id",
        ]
        .into_iter()
        .filter(|n| rule.path.contains(&format!("{{{n}}}")))
        .collect();
        let per_clinic = &theirs[names[0]];
        assert_eq!(
            per_clinic.len(),
            usize::try_from(CLINICS).unwrap() - 1,
            "{}",
            names[0]
        );
        // Every id of the path from the same other clinic.
        for other in per_clinic.keys() {
            let mut path = rule.path.to_owned();
            for name in &names {
                path = path.replace(&format!("{{{name}}}"), &theirs[name][other].to_string());
            }
            if path.ends_with("/inclusion") {
                path.push_str("?tree_size=1");
            }
            let (status, body) = call(at, rule.method, &path, token).await;
            assert_eq!(status, 404, "{} {}: {body}", rule.method, rule.path);
            probes += 1;
        }
    }
    assert!(probes >= 6 * 199, "only {probes} cross-clinic probes");

    // Nothing of theirs was changed by those POSTs and PATCHes: every other clinic's user
    // active in their role, every workstation unrevoked, every second factor in place,
    // every patient record as seeded.
    let changed: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM users WHERE clinic_id <> $1
                   AND (active = 0 OR (username = 'clinician' AND role <> 'clinician')
                        OR (username = 'admin' AND role <> 'admin')))
              + (SELECT count(*) FROM devices WHERE clinic_id <> $1 AND revoked_at_ms IS NOT NULL)
              + (SELECT count(*) FROM break_glass_grants
                  WHERE clinic_id <> $1 AND reviewed_at_ms IS NOT NULL)
              + (SELECT count(*) FROM break_glass_grants g JOIN patients p ON p.id = g.patient_id
                  WHERE p.clinic_id <> g.clinic_id)
              + (SELECT count(*) FROM patients WHERE clinic_id <> $1 AND version <> 0)
              + (SELECT count(*) FROM record_versions WHERE clinic_id <> $1)
              + (SELECT count(*) FROM appointments WHERE clinic_id <> $1 AND version <> 0)
              + (SELECT count(*) FROM coverages WHERE clinic_id <> $1 AND version <> 0)
              + (SELECT count(*) FROM practitioner_directory
                  WHERE clinic_id <> $1 AND (version <> 1 OR user_id IS NOT NULL))",
    )
    .bind(clinic.to_string())
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(changed, 0);
    assert_eq!(their_care_teams().await, care_teams_before);
    let factors: i64 = sqlx::query_scalar("SELECT count(*) FROM mfa_totp WHERE clinic_id <> $1")
        .bind(clinic.to_string())
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(factors, i64::try_from((OBSERVERS - 1) * 3).unwrap());
}
