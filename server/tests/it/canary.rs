//! PHI-safe errors and logs: canary values sent to every route (in the path, the query
//! and every body field a route might read, with and without a valid session) never come
//! back in a response, and neither they nor a patient's record served to a clinician ever
//! reach the server's log output, captured here at trace level.

use clinicdesk_protocol::policy::{self, Access, ROUTES, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, captured_logs, password_of};

const CANARY: &str = "CANARY-7c1f";

/// A body with the canary in every field some route reads.
fn canary_body() -> Value {
    let mut body = serde_json::Map::new();
    for field in [
        "username",
        "password",
        "display_name",
        "role",
        "enrollment_code",
        "device_name",
        "public_key",
        "nonce",
        "device_signature",
        "proof_key",
        "device_secret",
        "recovery_public_key",
        "recovery_signature",
        "mfa_grant",
        "app_version",
        "ticket",
        "code",
        "credential",
        "device_id",
        "events",
        "reason_code",
        "reason_text",
        "note",
        "new_password",
        "idempotency_key",
        "clinic_name",
        "admin_username",
        "admin_display_name",
    ] {
        body.insert(field.into(), json!(format!("{CANARY}-{field}")));
    }
    Value::Object(body)
}

const CANARY_QUERY: &str = "?patient_id=CANARY-7c1f&user_id=CANARY-7c1f&from_ms=CANARY-7c1f\
&format=CANARY-7c1f&cursor=CANARY-7c1f&tree_size=CANARY-7c1f&old_size=CANARY-7c1f&action=CANARY-7c1f\
&q=CANARY-7c1f";

async fn send(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let url = format!("{}{path}", server.url);
    let client = server.client();
    let mut rb = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&canary_body()),
        "PATCH" => client
            .patch(url)
            .header("If-Match", CANARY)
            .json(&canary_body()),
        "PUT" => client.put(url).json(&canary_body()),
        other => panic!("method {other}"),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t).header("x-canary", CANARY);
    }
    let resp = rb.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn canary_values_never_come_back_in_responses_or_reach_the_logs() {
    let logs = captured_logs();
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: clinician,
    } = server.signed_in(0xA, "clinician").await;
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let token_for = |role: Role| match role {
        Role::Admin => admin.session_token.expose(),
        _ => clinician.session_token.expose(),
    };

    for rule in ROUTES {
        let token = match rule.access {
            Access::Session(p) => Some(if policy::allows(Role::Clinician, p) {
                token_for(Role::Clinician)
            } else {
                token_for(Role::Admin)
            }),
            Access::AnySession => None, // logout would end the session the test uses
            _ => None,
        };
        // Ids that are not ids, then well-formed unknown ids, each with canary queries and
        // bodies.
        let mut canary_path = rule.path.to_owned();
        let mut unknown_path = rule.path.to_owned();
        for name in ["patient_id", "device_id", "user_id", "event_id", "grant_id"] {
            canary_path = canary_path.replace(&format!("{{{name}}}"), CANARY);
            unknown_path =
                unknown_path.replace(&format!("{{{name}}}"), &Uuid::now_v7().to_string());
        }
        for path in [canary_path, unknown_path] {
            let (status, body) = send(
                &server,
                rule.method,
                &format!("{path}{CANARY_QUERY}"),
                token,
            )
            .await;
            assert!(
                !body.contains("CANARY"),
                "{} {} echoed a canary ({status}): {body}",
                rule.method,
                rule.path
            );
            if status >= 400 {
                let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| {
                    panic!(
                        "{} {}: an error that is not JSON: {body}",
                        rule.method, rule.path
                    )
                });
                assert!(
                    error["code"].is_string(),
                    "{} {}: {body}",
                    rule.method,
                    rule.path
                );
            }
        }
    }

    // A login with canary credentials from a real workstation (past the device proof).
    let (status, body) = device.try_login(&server, CANARY, CANARY).await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains("CANARY"));

    // Valid requests carrying canaries in free text and new secrets: a break-glass reason
    // (PHI-handled) and an admin's review note, and a first password replaced by the user's
    // own. None reaches the log; refusals do not echo them.
    let outside = outside_patient(&server, clinician.session_token.expose()).await;
    let glass = format!("/v1/patients/{outside}/break-glass");
    let (status, body) = server
        .post(
            &glass,
            Some(clinician.session_token.expose()),
            json!({ "reason_code": "emergency", "reason_text": format!("{CANARY} {}", "x".repeat(500)) }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("CANARY"));
    let (status, grant) = server
        .post(
            &glass,
            Some(clinician.session_token.expose()),
            json!({ "reason_code": "emergency", "reason_text": format!("{CANARY} reason") }),
        )
        .await;
    assert_eq!(status, 201, "{grant}");
    let review = format!(
        "/v1/break-glass/{}/review",
        grant["grant_id"].as_str().unwrap()
    );
    let (status, _) = server
        .post(
            &review,
            Some(admin.session_token.expose()),
            json!({ "note": format!("{CANARY} note") }),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .post(
            &review,
            Some(admin.session_token.expose()),
            json!({ "note": format!("{CANARY} again") }),
        )
        .await;
    assert_eq!(status, 409);
    assert!(!body.to_string().contains("CANARY"));
    let first = format!("{CANARY}-first-lantern-parsnip");
    let (status, body) = server
        .post(
            "/v1/users",
            Some(admin.session_token.expose()),
            json!({ "username": "canary.user", "display_name": "Canary User (synthetic)",
                    "role": "billing", "password": first }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    device
        .first_login(
            &server,
            "canary.user",
            &first,
            &format!("{CANARY}-own-harbour-thistle"),
        )
        .await;

    // The device secret the workstation left in escrow at enrollment, released to it after
    // a recovery login, is in no log line.
    let recovered = device
        .recovery_login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let (status, released) = device
        .release_escrow(&server, recovered.session_token.expose(), None)
        .await;
    assert_eq!(status, 200);
    let escrowed = clinicdesk_protocol::audit::to_hex(&device.secret);
    assert_eq!(released["device_secret"].as_str(), Some(escrowed.as_str()));

    // The clinician reads a patient's full record: served, never logged.
    let (_, list) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    let patient_id = list["appointments"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, patient) = server
        .get(
            &format!("/v1/patients/{patient_id}"),
            clinician.session_token.expose(),
        )
        .await;
    assert_eq!(status, 200);
    let name = patient["name"].as_str().unwrap().to_owned();
    let phone = patient["phone"].as_str().unwrap().to_owned();
    let allergy = patient["clinical"]["allergies"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // The capture works: the server's own lines are there.
    assert!(
        text.contains("password accepted; second factor next"),
        "no server log captured"
    );
    assert!(text.contains(&clinician.user.user_id.to_string()));
    for secret in [CANARY, &name, &phone, &allergy, &escrowed] {
        if secret.is_empty() {
            continue;
        }
        assert!(
            !text.contains(secret),
            "the log holds a canary or PHI value"
        );
    }
    assert!(
        !text.contains(clinician.session_token.expose()),
        "a session token reached the log"
    );
}

/// The seeded clinic's patient outside the clinician's care team.
async fn outside_patient(server: &TestServer, token: &str) -> String {
    let (_, list) = server.get("/v1/appointments", token).await;
    for a in list["appointments"].as_array().unwrap() {
        let id = a["patient_id"].as_str().unwrap();
        let (_, p) = server.get(&format!("/v1/patients/{id}"), token).await;
        if p["clinical_access"] == "outside_care_team" {
            return id.to_owned();
        }
    }
    panic!("the seed keeps one patient off the care team");
}
