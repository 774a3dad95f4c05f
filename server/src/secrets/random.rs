//! Random tokens and their stored hashes. Secrets handed to clients (session tokens,
//! enrollment codes, nonces) are stored only as SHA-256 hashes.

use clinicdesk_protocol::audit::to_hex;
use sha2::{Digest, Sha256};

use crate::error::ServerError;

/// `n` bytes from the OS generator.
pub fn bytes<const N: usize>() -> Result<[u8; N], ServerError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| ServerError::Internal("os random source failed"))?;
    Ok(out)
}

/// A 256-bit token as hex.
pub fn token() -> Result<String, ServerError> {
    Ok(to_hex(&bytes::<32>()?))
}

/// A human-typeable code such as `K7QM-X2PD-9RTV` from an alphabet without look-alikes
/// (60 bits of entropy).
pub fn human_code() -> Result<String, ServerError> {
    const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let raw = bytes::<12>()?;
    let mut code = String::with_capacity(14);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(code)
}

/// Normalizes a typed code (case, spaces, dashes) before hashing.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The stored form of a token or code.
pub fn hash_secret(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_and_normalize() {
        let code = human_code().unwrap();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(normalize_code(&typed), code.replace('-', ""));
        assert_ne!(human_code().unwrap(), code);
    }

    #[test]
    fn tokens_are_random_and_hashes_differ_from_them() {
        let a = token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, token().unwrap());
        assert_ne!(hash_secret(&a), a);
    }
}
