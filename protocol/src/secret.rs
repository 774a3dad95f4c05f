//! `Secret`: a password, one-time code or token carried in a body, which redacts itself
//! and is wiped when dropped.
//!
//! The same shape as [`Phi`](crate::Phi): `Debug` prints `Secret(<redacted>)`, there is no
//! `Display`, and reading the value goes through the greppable [`Secret::expose`]. It
//! serializes as the plain JSON string, so a body's JSON is what it was with a `String`.
//! Dropping it zeroizes its buffer; a copy taken through `expose` is the caller's to mind.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// A password, one-time code (enrollment, TOTP, recovery), token or ticket.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads the secret. Every call site is a place a credential flows; keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads every byte instead of stopping at the first difference, so how long a comparison
/// takes says nothing about where two equally long secrets differ. (The server checks
/// credentials against stored hashes; this equality serves tests and the bodies that
/// derive `PartialEq`.)
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A string with the `password` format, the OpenAPI hint to hide it when shown.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
            .into()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("CANARY-hunter2");
        let printed = format!(
            "{secret:?} {:?} {:#?} {:?}",
            vec![secret.clone()],
            Some(secret.clone()),
            Secret::default()
        );
        assert!(!printed.contains("CANARY"), "{printed}");
        assert!(printed.contains("Secret(<redacted>)"), "{printed}");
    }

    #[test]
    fn json_is_the_plain_string_both_ways() {
        let secret = Secret::new("K7QM-X2PD \"9RTV\"");
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(json, serde_json::to_string("K7QM-X2PD \"9RTV\"").unwrap());
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), "K7QM-X2PD \"9RTV\"");
        assert_eq!(back, secret);
        assert!(serde_json::from_str::<Secret>("12").is_err());
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Secret::from("abc"), Secret::from(String::from("abc")));
        assert_ne!(Secret::from("abc"), Secret::from("abd"));
        assert_ne!(Secret::from("abc"), Secret::from("abcd"));
        assert_ne!(Secret::from(""), Secret::from("a"));
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn schema_is_a_password_string() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Secret::schema()).unwrap();
        assert_eq!(
            schema,
            serde_json::json!({"type": "string", "format": "password"})
        );
    }
}
