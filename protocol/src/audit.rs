//! The canonical audit event: one byte encoding, hashed for the chain and signed by the
//! device (or server) key. `docs/audit-format.md` specifies the encoding; the golden
//! test below pins it.
//!
//! Encoding (all integers big-endian): the tag `clinicdesk-audit-v2\0`, then each field in
//! declaration order. A string is a u32 byte length and its UTF-8 bytes; a UUID its 16
//! bytes; a u64/i64 8 bytes; a bool one byte 0/1; an option a byte 0 (absent) or 1 and the
//! value; a list a u32 count and its items; the previous hash its 32 bytes. The record
//! change of a create or update, when there is one, follows the previous hash as a byte 1,
//! the version, the optional hash before and the hash after; an event without one ends at
//! the previous hash, so every event recorded before changes existed keeps its bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::policy::Role;

const TAG: &[u8] = b"clinicdesk-audit-v2\0";

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    View,
    Create,
    Update,
    Delete,
    Export,
    Print,
    Login,
    Logout,
    Lock,
    Unlock,
    BreakGlass,
    DeviceEnrolled,
    DeviceRevoked,
    /// A user set up a second factor (TOTP or a WebAuthn key).
    MfaEnrolled,
    /// An admin removed a user's second factors; the user sets one up at next sign-in.
    MfaReset,
    /// An admin created a user.
    UserCreated,
    /// An admin changed a user's role (their sessions end).
    RoleChanged,
    /// An admin deactivated a user (their sessions end; they cannot sign in).
    UserDeactivated,
    /// A user changed their password (their sessions and grants end).
    PasswordChanged,
    /// An admin acknowledged a break-glass grant with a note.
    BreakGlassReviewed,
    /// The server released a device's escrowed secret back to that device, after its
    /// OS keychain lost it.
    DeviceSecretReleased,
    /// The server refused a workstation's event from the log (a fork or a broken chain
    /// link) and kept it as a tamper alert; `resource_id` is the refused event's hash and
    /// `fields` names the kind, so the alert is itself a provable leaf of the log.
    TamperAlert,
    /// The server stored an event a revoked workstation signed before its revocation and
    /// handed in after it; `resource_id` is that event's id. Admins see these with the
    /// alerts: a key used after its device was revoked shows here.
    ReceivedAfterRevocation,
    /// The server stored a workstation's event whose claims it doubts: the role it names is
    /// not the one the actor signed in with on that workstation, or its time lies before
    /// the workstation's enrollment (or the actor's first sign-in there) or ahead of the
    /// server's clock. `resource_id` is that event's id and `fields` names the claims in
    /// doubt (`actor_role`, `occurred_at_ms`). Admins see these with the alerts.
    ClaimFlagged,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::View => "view",
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Export => "export",
            AuditAction::Print => "print",
            AuditAction::Login => "login",
            AuditAction::Logout => "logout",
            AuditAction::Lock => "lock",
            AuditAction::Unlock => "unlock",
            AuditAction::BreakGlass => "break_glass",
            AuditAction::DeviceEnrolled => "device_enrolled",
            AuditAction::DeviceRevoked => "device_revoked",
            AuditAction::MfaEnrolled => "mfa_enrolled",
            AuditAction::MfaReset => "mfa_reset",
            AuditAction::UserCreated => "user_created",
            AuditAction::RoleChanged => "role_changed",
            AuditAction::UserDeactivated => "user_deactivated",
            AuditAction::PasswordChanged => "password_changed",
            AuditAction::BreakGlassReviewed => "break_glass_reviewed",
            AuditAction::DeviceSecretReleased => "device_secret_released",
            AuditAction::TamperAlert => "tamper_alert",
            AuditAction::ReceivedAfterRevocation => "received_after_revocation",
            AuditAction::ClaimFlagged => "claim_flagged",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// Who recorded and signed an event: a workstation, or the clinic's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Recorder {
    /// Signed by the workstation `device_id` with its enrolled key.
    Device,
    /// Signed by the server's audit key; `device_id` is the clinic's server chain.
    Server,
}

impl Recorder {
    pub fn as_str(self) -> &'static str {
        match self {
            Recorder::Device => "device",
            Recorder::Server => "server",
        }
    }
}

/// Why a user reached outside their usual scope ("break the glass").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlass {
    /// A reason code, e.g. `emergency`.
    pub reason_code: String,
    /// The user's own words.
    pub reason_text: String,
}

/// The request behind a server-recorded event, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestSeen {
    /// The peer's IP address.
    pub client_ip: String,
    /// The `User-Agent` header, empty if absent.
    pub user_agent: String,
    /// The workstation the caller's session is bound to.
    pub session_device_id: Option<Uuid>,
}

/// A SHA-256 digest, hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The `prev_hash` of a chain's first event.
    pub const GENESIS: Hash32 = Hash32([0; 32]);

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = from_hex(s)?;
        Some(Hash32(bytes.try_into().ok()?))
    }

    /// An event's hash from its canonical bytes, for callers that already hold them.
    pub fn of_canonical(canonical_bytes: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(canonical_bytes).into())
    }
}

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash32::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Hash32 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Hash32 {}

/// One access to or change of PHI (or a security event), as recorded by a device or the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// UUIDv7.
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub actor_user_id: Uuid,
    pub actor_role: Role,
    pub recorded_by: Recorder,
    /// The chain the event belongs to: the recording workstation, or the clinic's server
    /// chain when `recorded_by` is the server.
    pub device_id: Uuid,
    /// 1 for a chain's first event, then +1 each.
    pub device_seq: u64,
    pub action: AuditAction,
    pub resource_type: String,
    pub resource_id: String,
    pub patient_id: Option<Uuid>,
    /// Names of the fields read or changed, never their values.
    pub fields: Vec<String>,
    pub outcome: Outcome,
    /// UTC, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    pub offline: bool,
    /// The screen or route that caused it.
    pub route: String,
    /// Present when the access used break-glass; every event under it carries the reason.
    pub break_glass: Option<BreakGlass>,
    /// Present on server-recorded events.
    pub request: Option<RequestSeen>,
    /// Hash of the same chain's previous event; [`Hash32::GENESIS`] for the first.
    pub prev_hash: Hash32,
    /// Present on the create or update of a record: the version it made and the content
    /// hashes around it. The values stay in the record's history; this commits to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<RecordChange>,
}

/// What one create or update did to a record: the version it stored, and the SHA-256 of the
/// stored content before (none for a create) and after. `audit verify` checks each stored
/// version against the event that committed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordChange {
    pub version: u64,
    pub before: Option<Hash32>,
    pub after: Hash32,
}

impl AuditEvent {
    /// The first free-text field that holds a control character, if any. A workstation signs
    /// its own strings; none of them is a person's multi-line text (a break-glass reason is
    /// stored on one line), so a control character in any is refused at ingest rather than
    /// carried to a terminal or a report.
    pub fn control_text_field(&self) -> Option<&'static str> {
        let has = |s: &str| s.chars().any(char::is_control);
        if has(&self.resource_type) {
            return Some("resource_type");
        }
        if has(&self.resource_id) {
            return Some("resource_id");
        }
        if self.fields.iter().any(|f| has(f)) {
            return Some("fields");
        }
        if has(&self.route) {
            return Some("route");
        }
        match &self.break_glass {
            Some(b) if has(&b.reason_code) || has(&b.reason_text) => Some("break_glass"),
            _ => None,
        }
    }

    /// The canonical bytes that are hashed and signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(TAG);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(self.clinic_id.as_bytes());
        out.extend_from_slice(self.actor_user_id.as_bytes());
        put_str(&mut out, self.actor_role.as_str());
        put_str(&mut out, self.recorded_by.as_str());
        out.extend_from_slice(self.device_id.as_bytes());
        out.extend_from_slice(&self.device_seq.to_be_bytes());
        put_str(&mut out, self.action.as_str());
        put_str(&mut out, &self.resource_type);
        put_str(&mut out, &self.resource_id);
        put_uuid_opt(&mut out, self.patient_id.as_ref());
        out.extend_from_slice(&(self.fields.len() as u32).to_be_bytes());
        for field in &self.fields {
            put_str(&mut out, field);
        }
        put_str(&mut out, self.outcome.as_str());
        out.extend_from_slice(&self.occurred_at_ms.to_be_bytes());
        out.push(u8::from(self.offline));
        put_str(&mut out, &self.route);
        match &self.break_glass {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                put_str(&mut out, &b.reason_code);
                put_str(&mut out, &b.reason_text);
            }
        }
        match &self.request {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                put_str(&mut out, &r.client_ip);
                put_str(&mut out, &r.user_agent);
                put_uuid_opt(&mut out, r.session_device_id.as_ref());
            }
        }
        out.extend_from_slice(&self.prev_hash.0);
        if let Some(change) = &self.change {
            out.push(1);
            out.extend_from_slice(&change.version.to_be_bytes());
            match &change.before {
                None => out.push(0),
                Some(h) => {
                    out.push(1);
                    out.extend_from_slice(&h.0);
                }
            }
            out.extend_from_slice(&change.after.0);
        }
        out
    }

    /// SHA-256 of the canonical bytes: the next event's `prev_hash`.
    pub fn hash(&self) -> Hash32 {
        Hash32::of_canonical(&self.canonical_bytes())
    }
}

/// An event with the Ed25519 signature of its canonical bytes (64 bytes, hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedAuditEvent {
    pub event: AuditEvent,
    pub signature: String,
}

fn put_uuid_opt(out: &mut Vec<u8>, id: Option<&Uuid>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(id.as_bytes());
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Bytes of a hex string (either case); `None` if it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEvent {
        AuditEvent {
            id: Uuid::from_u128(1),
            clinic_id: Uuid::from_u128(2),
            actor_user_id: Uuid::from_u128(3),
            actor_role: Role::Clinician,
            recorded_by: Recorder::Device,
            device_id: Uuid::from_u128(4),
            device_seq: 1,
            action: AuditAction::View,
            resource_type: "Patient".into(),
            resource_id: "00000000-0000-0000-0000-000000000005".into(),
            patient_id: Some(Uuid::from_u128(5)),
            fields: vec!["name".into(), "birth_date".into()],
            outcome: Outcome::Success,
            occurred_at_ms: 1_790_000_000_123,
            offline: false,
            route: "patient".into(),
            break_glass: None,
            request: None,
            prev_hash: Hash32::GENESIS,
            change: None,
        }
    }

    /// Golden hash: changing the encoding must be a deliberate, versioned change.
    #[test]
    fn canonical_encoding_is_pinned() {
        let e = sample();
        let bytes = e.canonical_bytes();
        assert!(bytes.starts_with(TAG));
        assert_eq!(
            e.hash().to_hex(),
            "0552f3ecad7a394608bd59a1d1ae653107212e739773c18fb5df8844312afe76"
        );
    }

    /// The first of `all` that is not `current`.
    fn another<T: Copy + PartialEq>(all: &[T], current: T) -> T {
        all.iter().copied().find(|v| *v != current).unwrap()
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = sample();
        // Bound without `..`, here and for the nested structs below: a field added to
        // `AuditEvent`, `BreakGlass` or `RequestSeen` fails to compile until this test
        // binds it, and a bound field that no variant uses is an unused variable, which
        // clippy's `-D warnings` refuses.
        let AuditEvent {
            id,
            clinic_id,
            actor_user_id,
            actor_role,
            recorded_by,
            device_id,
            device_seq,
            action,
            resource_type,
            resource_id,
            patient_id,
            fields,
            outcome,
            occurred_at_ms,
            offline,
            route,
            break_glass,
            request,
            prev_hash,
            change,
        } = base.clone();
        // The sample leaves these out: their variants put them in, then vary what is inside.
        assert!(break_glass.is_none() && request.is_none() && change.is_none());
        let full = AuditEvent {
            break_glass: Some(BreakGlass {
                reason_code: "emergency".into(),
                reason_text: "covering".into(),
            }),
            request: Some(RequestSeen {
                client_ip: "127.0.0.1".into(),
                user_agent: "agent".into(),
                session_device_id: None,
            }),
            change: Some(RecordChange {
                version: 2,
                before: Some(Hash32([7; 32])),
                after: Hash32([8; 32]),
            }),
            ..base.clone()
        };
        let Some(BreakGlass {
            reason_code,
            reason_text,
        }) = full.break_glass.clone()
        else {
            unreachable!()
        };
        let Some(RequestSeen {
            client_ip,
            user_agent,
            session_device_id,
        }) = full.request.clone()
        else {
            unreachable!()
        };
        let Some(RecordChange {
            version,
            before,
            after,
        }) = full.change
        else {
            unreachable!()
        };

        let other = |u: Uuid| Uuid::from_u128(u.as_u128() ^ 0xff);
        let from = |start: &AuditEvent, change: &dyn Fn(&mut AuditEvent)| {
            let mut e = start.clone();
            change(&mut e);
            e
        };
        let roles = Role::ALL;
        let recorders = [Recorder::Device, Recorder::Server];
        let actions = [AuditAction::View, AuditAction::Export];
        let outcomes = [Outcome::Success, Outcome::Denied, Outcome::Failure];
        let variants = [
            ("id", from(&base, &|e| e.id = other(id))),
            (
                "clinic_id",
                from(&base, &|e| e.clinic_id = other(clinic_id)),
            ),
            (
                "actor_user_id",
                from(&base, &|e| e.actor_user_id = other(actor_user_id)),
            ),
            (
                "actor_role",
                from(&base, &|e| e.actor_role = another(&roles, actor_role)),
            ),
            (
                "recorded_by",
                from(&base, &|e| e.recorded_by = another(&recorders, recorded_by)),
            ),
            (
                "device_id",
                from(&base, &|e| e.device_id = other(device_id)),
            ),
            (
                "device_seq",
                from(&base, &|e| e.device_seq = device_seq + 1),
            ),
            (
                "action",
                from(&base, &|e| e.action = another(&actions, action)),
            ),
            (
                "resource_type",
                from(&base, &|e| e.resource_type = format!("{resource_type}s")),
            ),
            (
                "resource_id",
                from(&base, &|e| e.resource_id = format!("{resource_id}0")),
            ),
            ("patient_id (absent)", from(&base, &|e| e.patient_id = None)),
            (
                "patient_id (another)",
                from(&base, &|e| e.patient_id = patient_id.map(other)),
            ),
            (
                "fields (one fewer)",
                from(&base, &|e| e.fields = fields[..fields.len() - 1].to_vec()),
            ),
            (
                "fields (joined into one)",
                from(&base, &|e| e.fields = vec![fields.concat()]),
            ),
            (
                "outcome",
                from(&base, &|e| e.outcome = another(&outcomes, outcome)),
            ),
            (
                "occurred_at_ms",
                from(&base, &|e| e.occurred_at_ms = occurred_at_ms + 1),
            ),
            ("offline", from(&base, &|e| e.offline = !offline)),
            ("route", from(&base, &|e| e.route = format!("{route}/x"))),
            (
                "prev_hash",
                from(&base, &|e| e.prev_hash = Hash32(prev_hash.0.map(|x| x ^ 1))),
            ),
            (
                "break_glass (present)",
                from(&base, &|e| {
                    e.break_glass = Some(BreakGlass {
                        reason_code: "emergency".into(),
                        reason_text: String::new(),
                    })
                }),
            ),
            (
                "request (present)",
                from(&base, &|e| {
                    e.request = Some(RequestSeen {
                        client_ip: "127.0.0.1".into(),
                        user_agent: String::new(),
                        session_device_id: None,
                    })
                }),
            ),
            (
                "change (present)",
                from(&base, &|e| {
                    e.change = Some(RecordChange {
                        version: 1,
                        before: None,
                        after: Hash32::GENESIS,
                    })
                }),
            ),
            (
                "change.version",
                from(&full, &|e| {
                    e.change = Some(RecordChange {
                        version: version + 1,
                        before,
                        after,
                    })
                }),
            ),
            (
                "change.before",
                from(&full, &|e| {
                    e.change = Some(RecordChange {
                        version,
                        before: None,
                        after,
                    })
                }),
            ),
            (
                "change.after",
                from(&full, &|e| {
                    e.change = Some(RecordChange {
                        version,
                        before,
                        after: Hash32(after.0.map(|x| x ^ 1)),
                    })
                }),
            ),
            (
                "break_glass.reason_code",
                from(&full, &|e| {
                    e.break_glass = Some(BreakGlass {
                        reason_code: "other".into(),
                        reason_text: reason_text.clone(),
                    })
                }),
            ),
            (
                "break_glass.reason_text",
                from(&full, &|e| {
                    e.break_glass = Some(BreakGlass {
                        reason_code: reason_code.clone(),
                        reason_text: format!("{reason_text}."),
                    })
                }),
            ),
            (
                "request.client_ip",
                from(&full, &|e| {
                    e.request = Some(RequestSeen {
                        client_ip: "127.0.0.2".into(),
                        user_agent: user_agent.clone(),
                        session_device_id,
                    })
                }),
            ),
            (
                "request.user_agent",
                from(&full, &|e| {
                    e.request = Some(RequestSeen {
                        client_ip: client_ip.clone(),
                        user_agent: format!("{user_agent}/2"),
                        session_device_id,
                    })
                }),
            ),
            (
                "request.session_device_id",
                from(&full, &|e| {
                    e.request = Some(RequestSeen {
                        client_ip: client_ip.clone(),
                        user_agent: user_agent.clone(),
                        session_device_id: Some(session_device_id.map_or(device_id, other)),
                    })
                }),
            ),
        ];
        // Every variant differs from the sample, from the sample with both options present,
        // and from every other variant.
        let mut seen = std::collections::HashMap::from([
            (base.hash(), "the sample"),
            (full.hash(), "the sample with both options"),
        ]);
        for (changed, v) in variants {
            assert_ne!(v.hash(), base.hash(), "{changed} left the hash as it was");
            if let Some(earlier) = seen.insert(v.hash(), changed) {
                panic!("changing {changed} gave the same hash as {earlier}");
            }
        }
    }

    /// The change extension is pinned too, and an event without one keeps the v2 bytes above.
    #[test]
    fn a_record_change_is_pinned() {
        let mut plain = sample();
        plain.action = AuditAction::Update;
        let mut e = plain.clone();
        e.change = Some(RecordChange {
            version: 3,
            before: Some(Hash32([1; 32])),
            after: Hash32([2; 32]),
        });
        assert_eq!(
            e.canonical_bytes().len(),
            plain.canonical_bytes().len() + 1 + 8 + 1 + 32 + 32
        );
        assert!(e.canonical_bytes().starts_with(&plain.canonical_bytes()));
        assert_eq!(
            e.hash().to_hex(),
            "3fcf21f7e343eda5034f4bd6e81c7cd0a5e2413abea392fad92bb9c4f28ba506"
        );
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(!json.contains("change"), "{json}");
    }

    #[test]
    fn hex_round_trips() {
        let h = Hash32([0xab; 32]);
        assert_eq!(Hash32::from_hex(&h.to_hex()), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("abc"), None);
    }

    #[test]
    fn json_round_trips() {
        let e = sample();
        let json = serde_json::to_string(&e).unwrap();
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
