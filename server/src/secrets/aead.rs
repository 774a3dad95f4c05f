//! XChaCha20-Poly1305 as every sealing here uses it: a fresh random 24-byte nonce per
//! value, stored in front of the ciphertext, and associated data that binds the value to
//! what it belongs to (its owner, its clinic and field, its key's version).

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// `nonce ‖ ciphertext` of `msg` under `cipher`, bound to `aad`; `None` if the OS random
/// source fails.
pub fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).ok()?;
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .ok()?;
    Some([nonce.as_slice(), &sealed].concat())
}

/// The plaintext of what [`seal`] made under `cipher` with `aad`; `None` for anything else
/// (another key or binding, a flipped bit, a value too short to hold a nonce).
pub fn open(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}
