//! The screens the shell shows instead of a workspace: enrolling the workstation, signing
//! in and its second factor, choosing or changing a password, the lock screen, and the
//! workstation's own trouble (keychain, lost key, revoked). None of them shows PHI.
//!
//! Screens never import `workspace` (nor it them): only the shell picks between the two, by
//! the core's phase. They reach the core only through `bridge`.

mod device;
mod enroll;
mod lock;
mod password;
mod second_factor;
mod security_key;
mod sign_in;

pub(crate) use device::{KeychainScreen, RecoverKeyScreen, RevokedScreen};
pub(crate) use enroll::EnrollScreen;
pub(crate) use lock::LockScreen;
pub(crate) use password::{ChangePasswordScreen, ChooseNewPasswordScreen};
pub(crate) use second_factor::{RecoveryCodesScreen, SecondFactorScreen, SetUpSecondFactorScreen};
pub(crate) use sign_in::SignInScreen;
