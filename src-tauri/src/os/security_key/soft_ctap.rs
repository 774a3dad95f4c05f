//! A CTAP 2.0 security key with a PIN, in software (feature `soft-authenticator`: demo and
//! test builds only): what the app's CTAP2 path ([`super::ctap`], the code that drives USB
//! keys) talks to where no hardware key can be plugged in. Only the HID framing of a USB key
//! is left out.
//!
//! The key answers the CTAP2 messages themselves (CBOR bytes in, status and CBOR out):
//! getInfo, clientPin with PIN protocol 1 (getPinRetries, getKeyAgreement, getPinToken:
//! ECDH P-256, AES-256-CBC, HMAC-SHA-256), makeCredential and getAssertion. It checks the
//! platform's pinUvAuthParam, counts wrong PINs as keys do (three in a row and it wants to
//! be plugged in again, eight in all and it is blocked), and waits for the test to touch
//! it (or touches itself after a delay, in the demo). The credentials are made and used by
//! the library's `SoftToken` (P-256), told that the user was verified only when this key
//! verified the PIN. Its credentials live as long as the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};
use serde_cbor_2::Value;
use webauthn_authenticator_rs::AuthenticatorBackendHashedClientData;
use webauthn_authenticator_rs::ctap2::commands::{
    GetAssertionRequest, GetAssertionResponse, GetInfoResponse, MakeCredentialRequest,
    MakeCredentialResponse,
};
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::{
    AuthenticatorSelectionCriteria, AuthenticatorTransport, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor, PublicKeyCredentialRequestOptions, UserVerificationPolicy,
};

use super::SecurityKeyError;
use super::ctap::KeySource;

const MAX_RETRIES: u8 = 8;
const RETRIES_PER_PLUG: u8 = 3;
/// How long the key waits for a touch before it answers "user action timeout".
const TOUCH_WAIT: Duration = Duration::from_secs(20);

/// The key: cloned handles share one device.
#[derive(Clone)]
pub struct SoftCtapKey(Arc<Device>);

struct Device {
    state: Mutex<State>,
    touched: Condvar,
    /// The demo's key touches itself this long after it starts blinking.
    auto_touch: Option<Duration>,
}

struct State {
    plugged_in: bool,
    soft: SoftToken,
    /// LEFT(SHA-256(PIN), 16), as a key stores it.
    pin_hash: [u8; 16],
    retries: u8,
    failures_since_plugged: u8,
    agreement: EcKey<Private>,
    pin_token: Option<[u8; 32]>,
    touches: u32,
    waiting_for_touch: bool,
}

impl SoftCtapKey {
    /// A key with `pin` set, not plugged in yet, that waits for [`SoftCtapKey::touch`].
    pub fn new(pin: &str) -> Result<Self, SecurityKeyError> {
        Self::build(pin, None)
    }

    /// A key with `pin` set that touches itself `after` it starts blinking: for the demo.
    pub fn touching_itself(pin: &str, after: Duration) -> Result<Self, SecurityKeyError> {
        Self::build(pin, Some(after))
    }

    fn build(pin: &str, auto_touch: Option<Duration>) -> Result<Self, SecurityKeyError> {
        let (soft, _attestation_cert) =
            SoftToken::new(true).map_err(|_| SecurityKeyError::Unsupported)?;
        let mut pin_hash = [0; 16];
        pin_hash.copy_from_slice(&openssl::sha::sha256(pin.as_bytes())[..16]);
        Ok(Self(Arc::new(Device {
            state: Mutex::new(State {
                plugged_in: false,
                soft,
                pin_hash,
                retries: MAX_RETRIES,
                failures_since_plugged: 0,
                agreement: new_agreement_key().map_err(|_| SecurityKeyError::Unsupported)?,
                pin_token: None,
                touches: 0,
                waiting_for_touch: false,
            }),
            touched: Condvar::new(),
            auto_touch,
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plugs the key in (again): a power cycle, so the per-plug PIN count starts over and
    /// any PIN token is gone.
    pub fn plug_in(&self) -> Result<(), SecurityKeyError> {
        let mut state = self.state();
        state.plugged_in = true;
        state.failures_since_plugged = 0;
        state.pin_token = None;
        state.agreement = new_agreement_key().map_err(|_| SecurityKeyError::Unsupported)?;
        Ok(())
    }

    pub fn retries(&self) -> u8 {
        self.state().retries
    }

    /// Whether the key blinks, waiting for a touch.
    pub fn waiting_for_touch(&self) -> bool {
        self.state().waiting_for_touch
    }

    /// The user touches the key.
    pub fn touch(&self) {
        self.state().touches += 1;
        self.0.touched.notify_all();
    }

    /// Asks for a touch through the platform's prompt and waits for it.
    fn user_presence<U: UiCallback>(&self, ui: &U) -> Result<(), WebauthnCError> {
        ui.request_touch();
        let mut state = self.state();
        state.waiting_for_touch = true;
        let (wait, touches_itself) = match self.0.auto_touch {
            Some(after) => (after, true),
            None => (TOUCH_WAIT, false),
        };
        let (mut state, _) = self
            .0
            .touched
            .wait_timeout_while(state, wait, |s| s.touches == 0)
            .unwrap_or_else(PoisonError::into_inner);
        if touches_itself {
            state.touches += 1;
        }
        state.waiting_for_touch = false;
        if state.touches == 0 {
            return Err(WebauthnCError::Ctap(CtapError::Ctap2UserActionTimeout));
        }
        state.touches -= 1;
        Ok(())
    }

    fn answer<U: UiCallback>(&self, message: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError> {
        let (command, body) = message.split_first().ok_or(WebauthnCError::Cbor)?;
        match command {
            0x04 => cbor(BTreeMap::<u32, Value>::from(info())),
            0x06 => self.client_pin(parse(body)?),
            0x01 => {
                let (request, auth) = request(body, 0x08, 0x09)?;
                self.make_credential(request, &auth, ui)
            }
            0x02 => {
                let (request, auth) = request(body, 0x06, 0x07)?;
                self.get_assertion(request, &auth, ui)
            }
            _ => Err(ctap(CtapError::Ctap1InvalidCommand)),
        }
    }

    fn client_pin(&self, request: BTreeMap<u32, Value>) -> Result<Vec<u8>, WebauthnCError> {
        let mut state = self.state();
        if int(request.get(&1)) != Some(1) {
            return Err(ctap(CtapError::Ctap1InvalidParameter));
        }
        match int(request.get(&2)) {
            // getPinRetries
            Some(0x01) => cbor(BTreeMap::from([(
                3u32,
                Value::Integer(state.retries.into()),
            )])),
            // getKeyAgreement
            Some(0x02) => {
                let (x, y) = coordinates(&state.agreement)?;
                let key = BTreeMap::from([
                    (Value::Integer(1), Value::Integer(2)),
                    (Value::Integer(3), Value::Integer(-25)),
                    (Value::Integer(-1), Value::Integer(1)),
                    (Value::Integer(-2), Value::Bytes(x)),
                    (Value::Integer(-3), Value::Bytes(y)),
                ]);
                cbor(BTreeMap::from([(1u32, Value::Map(key))]))
            }
            // getPinToken
            Some(0x05) => {
                if state.retries == 0 {
                    return Err(ctap(CtapError::Ctap2PinBlocked));
                }
                if state.failures_since_plugged >= RETRIES_PER_PLUG {
                    return Err(ctap(CtapError::Ctap2PinAuthBlocked));
                }
                let platform = match request.get(&3) {
                    Some(Value::Map(m)) => m,
                    _ => return Err(ctap(CtapError::Ctap2MissingParameter)),
                };
                let pin_hash_enc = match request.get(&6) {
                    Some(Value::Bytes(b)) => b,
                    _ => return Err(ctap(CtapError::Ctap2MissingParameter)),
                };
                let shared = shared_secret(&state.agreement, platform)?;
                state.retries -= 1;
                let given = aes_cbc(Mode::Decrypt, &shared, pin_hash_enc)?;
                if given != state.pin_hash {
                    // A new agreement key after each mismatch, as the spec asks.
                    state.agreement = new_agreement_key()?;
                    state.failures_since_plugged += 1;
                    return Err(ctap(if state.retries == 0 {
                        CtapError::Ctap2PinBlocked
                    } else if state.failures_since_plugged >= RETRIES_PER_PLUG {
                        CtapError::Ctap2PinAuthBlocked
                    } else {
                        CtapError::Ctap2PinInvalid
                    }));
                }
                state.retries = MAX_RETRIES;
                state.failures_since_plugged = 0;
                let mut token = [0; 32];
                openssl::rand::rand_bytes(&mut token).map_err(|_| WebauthnCError::Internal)?;
                state.pin_token = Some(token);
                let encrypted = aes_cbc(Mode::Encrypt, &shared, &token)?;
                cbor(BTreeMap::from([(2u32, Value::Bytes(encrypted))]))
            }
            _ => Err(ctap(CtapError::Ctap2InvalidSubcommand)),
        }
    }

    /// Whether the platform proved the PIN for this request: `None` without a
    /// pinUvAuthParam, an error for a wrong one.
    fn verified(&self, auth: &PinAuth, client_data_hash: &[u8]) -> Result<bool, WebauthnCError> {
        let (Some(param), protocol) = auth else {
            return Ok(false);
        };
        let token = self.state().pin_token;
        match (protocol, token) {
            (Some(1), Some(token)) if param[..] == hmac(&token, client_data_hash)?[..16] => {
                Ok(true)
            }
            _ => Err(ctap(CtapError::Ctap2PinAuthInvalid)),
        }
    }

    fn make_credential<U: UiCallback>(
        &self,
        request: MakeCredentialRequest,
        auth: &PinAuth,
        ui: &U,
    ) -> Result<Vec<u8>, WebauthnCError> {
        if !self.verified(auth, &request.client_data_hash)? {
            // A CTAP 2.0 key with a PIN set makes no credential without it.
            return Err(ctap(CtapError::Ctap2PUATRequired));
        }
        self.user_presence(ui)?;
        let options = PublicKeyCredentialCreationOptions {
            rp: request.rp,
            user: request.user,
            challenge: Vec::new(),
            pub_key_cred_params: request.pub_key_cred_params,
            timeout: None,
            exclude_credentials: Some(request.exclude_list),
            hints: None,
            attestation: None,
            attestation_formats: None,
            authenticator_selection: Some(AuthenticatorSelectionCriteria {
                user_verification: UserVerificationPolicy::Required,
                ..Default::default()
            }),
            extensions: None,
        };
        let credential =
            self.state()
                .soft
                .perform_register(request.client_data_hash, options, 30_000)?;
        // The soft token answers with text map keys; a key sends the numbered ones.
        let response: MakeCredentialResponse =
            serde_cbor_2::from_slice(&credential.response.attestation_object)
                .map_err(|_| WebauthnCError::Cbor)?;
        cbor(BTreeMap::<u32, Value>::from(response))
    }

    fn get_assertion<U: UiCallback>(
        &self,
        request: GetAssertionRequest,
        auth: &PinAuth,
        ui: &U,
    ) -> Result<Vec<u8>, WebauthnCError> {
        let verified = self.verified(auth, &request.client_data_hash)?;
        self.user_presence(ui)?;
        let options = PublicKeyCredentialRequestOptions {
            challenge: Vec::new(),
            timeout: None,
            rp_id: request.rp_id,
            allow_credentials: request.allow_list,
            hints: None,
            user_verification: if verified {
                UserVerificationPolicy::Required
            } else {
                UserVerificationPolicy::Discouraged_DO_NOT_USE
            },
            extensions: None,
        };
        let credential = self
            .state()
            .soft
            .perform_auth(request.client_data_hash, options, 30_000)
            // The soft token's way of saying it holds none of the allowed credentials.
            .map_err(|_| ctap(CtapError::Ctap2NoCredentials))?;
        cbor(BTreeMap::<u32, Value>::from(GetAssertionResponse {
            credential: Some(PublicKeyCredentialDescriptor {
                type_: credential.type_,
                id: credential.raw_id,
                transports: None,
            }),
            auth_data: Some(credential.response.authenticator_data),
            signature: Some(credential.response.signature),
            number_of_credentials: None,
            user_selected: None,
            large_blob_key: None,
        }))
    }
}

/// The key is found while it is plugged in.
impl KeySource for SoftCtapKey {
    type Token = SoftCtapKey;

    fn plugged_in(&self) -> Result<Vec<SoftCtapKey>, SecurityKeyError> {
        Ok(if self.state().plugged_in {
            vec![self.clone()]
        } else {
            Vec::new()
        })
    }
}

impl std::fmt::Debug for SoftCtapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoftCtapKey")
    }
}

#[async_trait]
impl Token for SoftCtapKey {
    type Id = ();

    fn get_transport(&self) -> AuthenticatorTransport {
        AuthenticatorTransport::Usb
    }

    async fn transmit_raw<U>(&mut self, cbor: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        if !self.state().plugged_in {
            return Err(WebauthnCError::NoHidDevices);
        }
        self.answer(cbor, ui)
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }
}

fn info() -> GetInfoResponse {
    GetInfoResponse {
        versions: BTreeSet::from(["FIDO_2_0".to_owned()]),
        aaguid: Some(uuid::Uuid::nil()),
        options: Some(BTreeMap::from([
            ("rk".to_owned(), false),
            ("up".to_owned(), true),
            ("plat".to_owned(), false),
            ("clientPin".to_owned(), true),
        ])),
        max_msg_size: Some(1200),
        pin_protocols: Some(vec![1]),
        ..Default::default()
    }
}

fn ctap(e: CtapError) -> WebauthnCError {
    WebauthnCError::Ctap(e)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WebauthnCError> {
    serde_cbor_2::from_slice(body).map_err(|_| ctap(CtapError::Ctap2InvalidCBOR))
}

/// A request's pinUvAuthParam and pinUvAuthProtocol.
type PinAuth = (Option<Vec<u8>>, Option<u32>);

/// A request whose CBOR map has numbered keys, and its pinUvAuthParam and protocol (at
/// `param` and `protocol`), which the library's parsers leave out of the request.
fn request<T: TryFrom<BTreeMap<u32, Value>>>(
    body: &[u8],
    param: u32,
    protocol: u32,
) -> Result<(T, PinAuth), WebauthnCError> {
    let map: BTreeMap<u32, Value> = parse(body)?;
    let auth_param = match map.get(&param) {
        Some(Value::Bytes(b)) => Some(b.clone()),
        _ => None,
    };
    let auth_protocol = int(map.get(&protocol)).and_then(|p| u32::try_from(p).ok());
    let request = T::try_from(map).map_err(|_| ctap(CtapError::Ctap2MissingParameter))?;
    Ok((request, (auth_param, auth_protocol)))
}

fn cbor(map: BTreeMap<u32, Value>) -> Result<Vec<u8>, WebauthnCError> {
    serde_cbor_2::to_vec(&map).map_err(|_| WebauthnCError::Cbor)
}

fn int(value: Option<&Value>) -> Option<i128> {
    match value {
        Some(Value::Integer(i)) => Some(*i),
        _ => None,
    }
}

fn group() -> Result<EcGroup, WebauthnCError> {
    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(|_| WebauthnCError::Internal)
}

fn new_agreement_key() -> Result<EcKey<Private>, WebauthnCError> {
    let group = group()?;
    EcKey::generate(&group).map_err(|_| WebauthnCError::Internal)
}

fn coordinates(key: &EcKey<Private>) -> Result<(Vec<u8>, Vec<u8>), WebauthnCError> {
    let internal = |_| WebauthnCError::Internal;
    let mut ctx = BigNumContext::new().map_err(internal)?;
    let (mut x, mut y) = (
        BigNum::new().map_err(internal)?,
        BigNum::new().map_err(internal)?,
    );
    let group = group()?;
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .map_err(internal)?;
    Ok((
        x.to_vec_padded(32).map_err(internal)?,
        y.to_vec_padded(32).map_err(internal)?,
    ))
}

/// PIN protocol 1: SHA-256 of the x coordinate of the ECDH product.
fn shared_secret(
    mine: &EcKey<Private>,
    platform: &BTreeMap<Value, Value>,
) -> Result<[u8; 32], WebauthnCError> {
    let coordinate = |label: i128| match platform.get(&Value::Integer(label)) {
        Some(Value::Bytes(b)) if b.len() == 32 => BigNum::from_slice(b).ok(),
        _ => None,
    };
    let bad = || ctap(CtapError::Ctap1InvalidParameter);
    let (x, y) = (
        coordinate(-2).ok_or_else(bad)?,
        coordinate(-3).ok_or_else(bad)?,
    );
    let group = group()?;
    let theirs = EcKey::from_public_key_affine_coordinates(&group, &x, &y).map_err(|_| bad())?;
    let mine = PKey::from_ec_key(mine.clone()).map_err(|_| bad())?;
    let theirs = PKey::from_ec_key(theirs).map_err(|_| bad())?;
    let mut deriver = Deriver::new(&mine).map_err(|_| bad())?;
    deriver.set_peer(&theirs).map_err(|_| bad())?;
    let z = deriver.derive_to_vec().map_err(|_| bad())?;
    Ok(openssl::sha::sha256(&z))
}

/// AES-256-CBC with a zero IV and no padding (PIN protocol 1).
fn aes_cbc(mode: Mode, key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, WebauthnCError> {
    let bad = |_| ctap(CtapError::Ctap1InvalidParameter);
    let mut crypter =
        Crypter::new(Cipher::aes_256_cbc(), mode, key, Some(&[0; 16])).map_err(bad)?;
    crypter.pad(false);
    let mut out = vec![0; data.len() + 16];
    let n = crypter.update(data, &mut out).map_err(bad)?;
    let m = crypter.finalize(&mut out[n..]).map_err(bad)?;
    out.truncate(n + m);
    Ok(out)
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, WebauthnCError> {
    let key = PKey::hmac(key).map_err(|_| WebauthnCError::Internal)?;
    let mut signer =
        Signer::new(MessageDigest::sha256(), &key).map_err(|_| WebauthnCError::Internal)?;
    signer
        .sign_oneshot_to_vec(data)
        .map_err(|_| WebauthnCError::Internal)
}
