//! Recovery codes: ten single-use codes of 60 random bits each, shown once when the first
//! factor is set up and stored only as SHA-256 hashes of their normalized form.

use crate::error::ServerError;
use crate::secrets::random::{hash_secret, human_code, normalize_code};

pub const COUNT: usize = 10;

/// New codes and their stored hashes.
pub fn generate() -> Result<(Vec<String>, Vec<String>), ServerError> {
    let codes = (0..COUNT)
        .map(|_| human_code())
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = codes.iter().map(|c| hash_of(c)).collect();
    Ok((codes, hashes))
}

/// The stored form of a typed code (case, spaces and dashes do not matter).
pub fn hash_of(typed: &str) -> String {
    hash_secret(&normalize_code(typed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_hash_as_typed() {
        let (codes, hashes) = generate().unwrap();
        assert_eq!(codes.len(), COUNT);
        let unique: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(unique.len(), COUNT);
        let typed = codes[0].to_lowercase().replace('-', " ");
        assert_eq!(hash_of(&typed), hashes[0]);
        assert!(!hashes.contains(&codes[0]));
    }
}
