//! `Phi<T>`: protected health information that redacts itself.
//!
//! `Debug` prints `Phi(<redacted>)`, there is no `Display`, and reading the value goes
//! through the greppable [`Phi::expose`]. Serialization is opt-in per inner type via
//! [`SerializablePhi`], so a new PHI type cannot reach the wire by accident.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that is protected health information.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Reads the protected value. Every call site is a place PHI flows; keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phi(<redacted>)")
    }
}

/// Marker for inner types that may be serialized inside a `Phi` (wire types only).
pub trait SerializablePhi {}
impl SerializablePhi for String {}
impl<T: SerializablePhi> SerializablePhi for Vec<T> {}

impl<T: Serialize + SerializablePhi> Serialize for Phi<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Phi<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Phi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_value() {
        let name = Phi::new("CANARY-Zelda-Quux".to_string());
        let printed = format!("{name:?} {:?}", vec![name.clone()]);
        assert!(!printed.contains("CANARY"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn serializes_as_the_inner_value() {
        let name = Phi::new("Test Patient".to_string());
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Test Patient\"");
        let back: Phi<String> = serde_json::from_str("\"Test Patient\"").unwrap();
        assert_eq!(back, name);
    }
}
