//! Words for the core's refusals, shown in the error line. Built from the error code and
//! the field it names only: the core never sends a value back, so no PHI reaches this text.

use clinicdesk_protocol::{ApiError, ErrorCode};

/// Words for an error code. Never a value: the core sends none.
pub(crate) fn explain(e: &ApiError) -> String {
    let text = match e.code {
        ErrorCode::InvalidCredentials => "That username and password do not match.",
        ErrorCode::WeakPassword => {
            "That password is too easy to guess: use at least 12 characters, not a common password and not the person's name."
        }
        ErrorCode::Conflict => "That already exists (a username can be used once per clinic).",
        ErrorCode::PayloadTooLarge => "That is more than the server takes at once.",
        ErrorCode::PossibleDuplicate => {
            "A patient with the same name and birth date, or the same phone, is already registered. Check whether this is the same person."
        }
        ErrorCode::TooManyAttempts => {
            "Too many failed attempts for this account or workstation. Wait 15 minutes, then try again, or ask your admin."
        }
        ErrorCode::InvalidSecondFactor => {
            "That code was not accepted. Codes change every 30 seconds and each works once; after several wrong codes, start over."
        }
        ErrorCode::InvalidEnrollmentCode => {
            "That enrollment code is not valid. Codes work once and expire after 15 minutes; ask your admin for a new one."
        }
        ErrorCode::ServerUnreachable => {
            "The ClinicDesk server cannot be reached. Check the network, then try again."
        }
        ErrorCode::KeychainUnavailable => {
            "The system keychain is locked or unavailable. Unlock your desktop keyring, then try again. ClinicDesk never stores keys anywhere else."
        }
        ErrorCode::CacheUnavailable => {
            "The encrypted offline cache could not be opened. Contact your clinic's IT."
        }
        ErrorCode::DeviceRevoked => "This workstation's access was revoked by an admin.",
        ErrorCode::DeviceUnknown => {
            "This workstation is not known to the server. Ask your admin to enroll it again."
        }
        ErrorCode::OfflineTooLong => {
            "This workstation has been offline longer than your clinic allows. Connect to the network and sign in again."
        }
        ErrorCode::ServerNotTrusted => {
            "The server could not prove it is your clinic's server: its certificate is not the one this workstation trusts. Nothing was sent and nothing opened. Tell your admin."
        }
        ErrorCode::OfflineNeedsSecondFactor => {
            "Offline, your password alone opens this workstation for 12 hours after you last confirmed a sign-in with your code or security key. Connect to the network and sign in again."
        }
        ErrorCode::StorageFull => {
            "The clinic's server is out of storage space, so it cannot record who sees what: nothing is shown or changed until it has room again. Your changes wait on this workstation. Tell your clinic's IT."
        }
        ErrorCode::Locked => "The session is locked.",
        ErrorCode::SessionExpired => "Your session ended. Sign in again.",
        ErrorCode::Forbidden => "Your role does not allow this.",
        ErrorCode::NotFound => "Not found.",
        ErrorCode::MethodNotAllowed => "The server does not offer that request.",
        ErrorCode::BadRequest => "Please check the form.",
        _ => "Something went wrong. Try again, or contact your clinic's IT.",
    };
    match (&e.code, e.field.as_deref()) {
        (ErrorCode::BadRequest, Some("reason_text")) => {
            "Say why you need this chart, in at most 500 characters on one subject.".to_owned()
        }
        (ErrorCode::BadRequest, Some("note")) => {
            "Write what you checked, in at most 1000 characters.".to_owned()
        }
        (ErrorCode::BadRequest, Some("clinician_id")) => {
            "That person is not an active clinician of this clinic any more.".to_owned()
        }
        (ErrorCode::BadRequest, Some("recovery-key.json")) => {
            "Nobody who has signed in on this workstation is still signed in here, so its key cannot be restored. Ask your admin to enroll it again; your records are safe on the server.".to_owned()
        }
        (ErrorCode::BadRequest, Some("recovery_password")) => {
            "That password opens nothing on this workstation. Someone who has used it must do this, with the password they last signed in here with.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key_cancelled")) => {
            "The security key was cancelled. Use it again, or enter a code.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key_pin_paused")) => {
            "Your security key took too many wrong PINs in a row. Unplug it, plug it in again, and retry with the right PIN.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key_pin_blocked")) => {
            "Your security key's PIN is blocked after too many wrong tries. It can only be reset, which erases it: use a recovery code now, and ask your admin to reset your second factor.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key_no_pin")) => {
            "This security key has no PIN. ClinicDesk needs a key protected by a PIN: set one with the key maker's tool, or ask your clinic's IT.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key_unsupported")) => {
            "This security key does not support FIDO2. Use a FIDO2 key, or enter a code.".to_owned()
        }
        // A practitioner directory link's refusals (the server's only ones naming `user_id`).
        (ErrorCode::Conflict, Some("user_id")) => {
            "That account already stands for another practitioner of the old system. Unlink that one first.".to_owned()
        }
        (ErrorCode::BadRequest, Some("user_id")) => {
            "Only an active clinician's account can stand for a practitioner.".to_owned()
        }
        (ErrorCode::Conflict, Some("pin")) => {
            "Your security key is not asking for a PIN right now.".to_owned()
        }
        (ErrorCode::InvalidSecondFactor, Some("security_key")) => {
            "Your security key did not answer, or is not the one registered for you. Insert it, touch it when it blinks, and try again; or enter a code.".to_owned()
        }
        (ErrorCode::Conflict, Some("grant_id")) => {
            "This access has already been acknowledged by the admins it needed.".to_owned()
        }
        (ErrorCode::Conflict, Some("reviewer")) => {
            "You have already acknowledged this access; it needs another admin.".to_owned()
        }
        (ErrorCode::Forbidden, Some("grantee")) => {
            "This access was opened for your own account: another admin reviews it.".to_owned()
        }
        (ErrorCode::Forbidden, Some("account_changed")) => {
            "You created or changed this clinician's account within 30 days of this access: another admin reviews it.".to_owned()
        }
        (ErrorCode::Conflict, Some("unsent_changes")) => {
            "Some of your changes have not reached the server yet, and signing out would delete them. Connect and let them send (see Unsent changes), or lock instead: your changes stay on this workstation.".to_owned()
        }
        (ErrorCode::Conflict, Some("start")) => {
            "That practitioner is already booked at that time. Choose another time.".to_owned()
        }
        (ErrorCode::Conflict, Some("mrn")) => {
            "That MRN belongs to another patient.".to_owned()
        }
        (ErrorCode::StorageFull, Some("workstation")) => {
            "This workstation's disk is full, so it cannot record who sees what: nothing is shown until it has room again. Nothing already recorded is lost. Free some space, or tell your clinic's IT.".to_owned()
        }
        (ErrorCode::BadRequest, Some("status")) => {
            "The appointment cannot move to that status from where it is now.".to_owned()
        }
        (ErrorCode::BadRequest, Some("cancellation_reason")) => {
            "Say why the appointment is cancelled.".to_owned()
        }
        (ErrorCode::Forbidden, Some(field)) => {
            format!("Your role may not change {}.", field.replace('_', " "))
        }
        (ErrorCode::BadRequest, Some("query")) => {
            "Type the start of a name, a date of birth (YYYY-MM-DD), an MRN or a phone number.".to_owned()
        }
        (ErrorCode::BadRequest, Some(field)) => {
            format!("Please fill in {}.", field.replace('_', " "))
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_directory_link_says_why_not_that_a_username_is_taken() {
        let conflict = explain(&ApiError::with_field(ErrorCode::Conflict, "user_id"));
        assert!(conflict.contains("another practitioner"), "{conflict}");
        let refused = explain(&ApiError::with_field(ErrorCode::BadRequest, "user_id"));
        assert!(refused.contains("active clinician"), "{refused}");
    }
}
