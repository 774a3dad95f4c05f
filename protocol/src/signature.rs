//! How every Ed25519 signature of the audit format is verified (events, checkpoints,
//! receipts, export bundles): the rules of ZIP-215, plus the refusal of a low-order public
//! key. `docs/audit-format.md` ("Verifying a signature") states them for other verifiers.
//!
//! - `s` must be canonical (below the group order ℓ);
//! - `A` and `R` are decoded as in RFC 8032 §5.1.3, except that a non-canonical `y` (at
//!   least p) is reduced rather than refused, and `x = 0` with its sign bit set is taken as
//!   `x = 0`; a key or `R` that decodes to no point is refused;
//! - `A` must not be of low order (any signature verifies under such a key);
//! - `k = SHA-512(R ‖ A ‖ M)` over `R` and `A` as sent, and the signature is valid when
//!   `[8][s]B = [8]R + [8][k]A` (the cofactored equation).
//!
//! Why this rule and not RFC 8032's strictest reading: with the cofactored equation a batch
//! of signatures checked at once ([`verify_batch`]) accepts exactly the signatures checked
//! one by one would (but for a chance of 2^-128), so a device cannot craft an event that the
//! server's batched ingest stores and the one-by-one verifier (`audit verify`) later calls
//! forged. Honest signers' signatures verify under every reading.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// A public key that the rule accepts: it decodes, and is not of low order.
#[derive(Debug, Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let point = CompressedEdwardsY(*bytes).decompress()?;
        (!point.is_small_order()).then_some(Self {
            bytes: *bytes,
            point,
        })
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes: [u8; 32] = crate::audit::from_hex(hex)?.try_into().ok()?;
        Self::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn to_hex(&self) -> String {
        crate::audit::to_hex(&self.bytes)
    }
}

/// Two keys are the same key when their encodings are.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

/// The parts of one signature the equation uses.
struct Parts {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn parts(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Option<Parts> {
    let (r_bytes, s_bytes) = signature.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().ok()?;
    let s_bytes: [u8; 32] = s_bytes.try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(key.bytes)
        .chain_update(message)
        .finalize()
        .into();
    Some(Parts {
        r,
        s,
        k: Scalar::from_bytes_mod_order_wide(&digest),
    })
}

/// Whether `signature` is `key`'s signature of `message` by the rule above.
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let Some(Parts { r, s, k }) = parts(key, message, signature) else {
        return false;
    };
    // [s]B - [k]A - R, times the cofactor.
    let residue = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-key.point, &s) - r;
    residue.mul_by_cofactor().is_identity()
}

/// [`verify`] with the signature as 128 hex digits (how the wire carries it).
pub fn verify_hex(key: &PublicKey, message: &[u8], signature_hex: &str) -> bool {
    crate::audit::from_hex(signature_hex)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .is_some_and(|signature| verify(key, message, &signature))
}

/// Whether every one of `signed` (message, signature) is `key`'s, by the rule of
/// [`verify`], checked at once: with a random 128-bit `z` per signature,
/// `[8]( [Σ z·s]B − Σ z·R − [Σ z·k]A ) = 0`. Valid signatures always pass; a batch holding
/// any invalid one passes with probability 2^-128, provided the `coefficients` (16 bytes
/// per signature) are fresh secret randomness the signer cannot predict. About four times
/// faster than one by one for a few hundred signatures of one key.
pub fn verify_batch<M: AsRef<[u8]>>(
    key: &PublicKey,
    signed: &[(M, [u8; 64])],
    coefficients: &[u8],
) -> bool {
    if coefficients.len() != signed.len() * 16 {
        return false;
    }
    let mut b_coefficient = Scalar::ZERO;
    let mut a_coefficient = Scalar::ZERO;
    let mut zs = Vec::with_capacity(signed.len());
    let mut rs = Vec::with_capacity(signed.len());
    for ((message, signature), z) in signed.iter().zip(coefficients.chunks_exact(16)) {
        let Some(Parts { r, s, k }) = parts(key, message.as_ref(), signature) else {
            return false;
        };
        let mut wide = [0u8; 32];
        wide[..16].copy_from_slice(z);
        let z = Scalar::from_bytes_mod_order(wide);
        b_coefficient += z * s;
        a_coefficient += z * k;
        zs.push(z);
        rs.push(r);
    }
    let sum = EdwardsPoint::vartime_multiscalar_mul(
        [b_coefficient, -a_coefficient]
            .into_iter()
            .chain(zs.into_iter().map(|z| -z)),
        [ED25519_BASEPOINT_POINT, key.point].into_iter().chain(rs),
    );
    sum.mul_by_cofactor().is_identity()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::audit::from_hex;

    fn test_data(path: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/ed25519")
            .join(path);
        std::fs::read_to_string(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()))
    }

    fn bytes<const N: usize>(hex: &str) -> [u8; N] {
        from_hex(hex).unwrap().try_into().unwrap()
    }

    /// SUPERCOP's reference vectors (the first three are RFC 8032 §7.1's TEST 1–3): each
    /// signature verifies, one by one and in a batch, and a flipped bit anywhere fails both.
    #[test]
    fn reference_vectors_verify_and_a_changed_bit_does_not() {
        let text = test_data("sign-128.input");
        for line in text.lines().take(128) {
            let fields: Vec<&str> = line.split(':').collect();
            let key = PublicKey::from_bytes(&bytes(fields[1])).unwrap();
            let message = from_hex(fields[2]).unwrap();
            let signature: [u8; 64] = bytes(&fields[3][..128]);
            assert!(verify(&key, &message, &signature));
            let mut altered = signature;
            altered[5] ^= 1;
            assert!(!verify(&key, &message, &altered));
            let mut wrong = message.clone();
            wrong.push(0);
            assert!(!verify(&key, &wrong, &signature));
        }
    }

    /// C2SP's CCTV edge cases (low-order and mixed-order points, non-canonical encodings, a
    /// residue only the cofactored equation clears): all are accepted as ZIP-215 does, but
    /// those under a low-order key, and those whose `k` was computed over re-encoded points
    /// (`k` is over `R` and `A` as sent).
    #[test]
    fn edge_cases_follow_zip_215_but_refuse_low_order_keys() {
        let vectors: serde_json::Value =
            serde_json::from_str(&test_data("cctv-ed25519vectors.json")).unwrap();
        let vectors = vectors.as_array().unwrap();
        assert!(vectors.len() > 100);
        for v in vectors {
            let flags: Vec<&str> = v["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let key = PublicKey::from_bytes(&bytes(v["key"].as_str().unwrap()));
            let signature: [u8; 64] = bytes(v["sig"].as_str().unwrap());
            let message = v["msg"].as_str().unwrap().as_bytes();
            let accepted = key.is_some_and(|key| verify(&key, message, &signature));
            let expected = !flags.contains(&"low_order_A") && !flags.contains(&"reencoded_k");
            assert_eq!(accepted, expected, "vector {} {flags:?}", v["number"]);
            if let Some(key) = key {
                let batched = verify_batch(&key, &[(message, signature)], &[7; 16]);
                assert_eq!(batched, accepted, "vector {} batched", v["number"]);
            }
        }
    }

    fn coefficients(n: usize, seed: u8) -> Vec<u8> {
        (0..n * 16)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A batch of one key's signatures passes when every one is valid, and fails for one bad
    /// signature at any position. (The CCTV test above checks batches of one against the
    /// edge cases, a residue only the cofactor clears among them.)
    #[test]
    fn a_batch_agrees_with_one_by_one() {
        use ed25519_dalek::Signer;
        let signer = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let key = PublicKey::from_bytes(&signer.verifying_key().to_bytes()).unwrap();
        let messages: Vec<Vec<u8>> = (0..40).map(|i| format!("event {i}").into_bytes()).collect();
        let mut signed: Vec<(&[u8], [u8; 64])> = messages
            .iter()
            .map(|m| (m.as_slice(), signer.sign(m).to_bytes()))
            .collect();
        assert!(signed.iter().all(|(m, s)| verify(&key, m, s)));
        assert!(verify_batch(&key, &signed, &coefficients(40, 1)));
        for bad in [0, 17, 39] {
            let good = signed[bad].1;
            // Another event's signature, then a changed bit.
            signed[bad].1 = signed[(bad + 1) % 40].1;
            assert!(!verify_batch(&key, &signed, &coefficients(40, 2)));
            signed[bad].1 = good;
            signed[bad].1[40] ^= 0x10;
            assert!(!verify(&key, signed[bad].0, &signed[bad].1));
            assert!(!verify_batch(&key, &signed, &coefficients(40, 3)));
            signed[bad].1 = good;
        }
        assert!(verify_batch(&key, &signed, &coefficients(40, 4)));
        assert!(
            !verify_batch(&key, &signed, &coefficients(39, 1)),
            "one z each"
        );
        assert!(verify_batch::<&[u8]>(&key, &[], &[]));
    }
}
