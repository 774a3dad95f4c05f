//! What a security key waits for from the user, shared between the ceremony's thread and
//! the UI: the core shows the current prompt in its status, and a PIN typed in the UI is
//! handed to the waiting ceremony here (never stored beyond that hand-over).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clinicdesk_protocol::app::KeyPrompt;
use zeroize::Zeroizing;

use super::SecurityKeyError;

/// How long a key's PIN prompt waits for the user before the ceremony gives up.
pub const PIN_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct State {
    prompt: Option<KeyPrompt>,
    /// The user's answer to a PIN prompt, taken by the ceremony.
    answer: Option<Answer>,
    /// The user gave up: the ceremony stops at its next prompt or wait.
    cancelled: bool,
    /// The last PIN given was refused by the key: the next prompt says so.
    pin_refused: bool,
}

enum Answer {
    Pin(Zeroizing<String>),
    Cancel,
}

#[derive(Default)]
pub struct KeyPrompts {
    state: Mutex<State>,
    changed: Condvar,
}

impl KeyPrompts {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the running ceremony waits for, if one runs.
    pub fn current(&self) -> Option<KeyPrompt> {
        self.state().prompt
    }

    /// A ceremony starts: no prompt yet, nothing left over from the last one.
    pub fn begin(&self) {
        *self.state() = State::default();
    }

    /// The ceremony ended (any way): no prompt is shown any longer.
    pub fn end(&self) {
        *self.state() = State::default();
        self.changed.notify_all();
    }

    pub fn show(&self, prompt: Option<KeyPrompt>) {
        self.state().prompt = prompt;
    }

    /// The key refused the PIN: the next prompt asks again, saying so.
    pub fn pin_refused(&self) {
        self.state().pin_refused = true;
    }

    pub fn cancelled(&self) -> bool {
        self.state().cancelled
    }

    /// Shows the PIN prompt and waits up to `wait` for the user's answer; `None` when the
    /// user cancelled or did not answer in time.
    pub fn ask_pin(&self, wait: Duration) -> Option<Zeroizing<String>> {
        let deadline = Instant::now() + wait;
        let mut state = self.state();
        if state.cancelled {
            return None;
        }
        state.prompt = Some(if state.pin_refused {
            KeyPrompt::WrongPin
        } else {
            KeyPrompt::EnterPin
        });
        state.answer = None;
        loop {
            match state.answer.take() {
                Some(Answer::Pin(pin)) => {
                    state.prompt = None;
                    state.pin_refused = false;
                    return Some(pin);
                }
                Some(Answer::Cancel) => {
                    state.prompt = None;
                    return None;
                }
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.prompt = None;
                state.cancelled = true;
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The user typed the key's PIN: it goes to the waiting ceremony, and the prompt is
    /// answered (the key asks again if it refuses the PIN). Refused when no key asks for
    /// one.
    pub fn answer_pin(&self, pin: Zeroizing<String>) -> Result<(), SecurityKeyError> {
        let mut state = self.state();
        if !matches!(
            state.prompt,
            Some(KeyPrompt::EnterPin | KeyPrompt::WrongPin)
        ) {
            return Err(SecurityKeyError::NotAsked);
        }
        state.prompt = None;
        state.answer = Some(Answer::Pin(pin));
        self.changed.notify_all();
        Ok(())
    }

    /// The user gave up on the running ceremony.
    pub fn cancel(&self) {
        let mut state = self.state();
        state.cancelled = true;
        state.answer = Some(Answer::Cancel);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_pin_typed_in_the_ui_reaches_the_waiting_ceremony_once() {
        let prompts = Arc::new(KeyPrompts::default());
        prompts.begin();
        assert_eq!(
            prompts.answer_pin(Zeroizing::new("1234".into())),
            Err(SecurityKeyError::NotAsked),
            "nobody asked for a PIN yet"
        );
        let asking = prompts.clone();
        let ceremony = std::thread::spawn(move || asking.ask_pin(Duration::from_secs(10)));
        while prompts.current() != Some(KeyPrompt::EnterPin) {
            std::thread::yield_now();
        }
        prompts.answer_pin(Zeroizing::new("1234".into())).unwrap();
        assert_eq!(
            prompts.answer_pin(Zeroizing::new("1234".into())),
            Err(SecurityKeyError::NotAsked),
            "a prompt takes one answer"
        );
        assert_eq!(
            ceremony.join().unwrap().as_deref().map(String::as_str),
            Some("1234")
        );
        assert_eq!(prompts.current(), None);
        assert!(prompts.answer_pin(Zeroizing::new("5678".into())).is_err());
    }

    #[test]
    fn a_refused_pin_is_asked_again_and_cancel_or_silence_ends_the_wait() {
        let prompts = Arc::new(KeyPrompts::default());
        prompts.begin();
        prompts.pin_refused();
        let asking = prompts.clone();
        let ceremony = std::thread::spawn(move || asking.ask_pin(Duration::from_secs(10)));
        while prompts.current() != Some(KeyPrompt::WrongPin) {
            std::thread::yield_now();
        }
        prompts.cancel();
        assert!(ceremony.join().unwrap().is_none());
        assert!(prompts.cancelled());
        assert!(
            prompts.ask_pin(Duration::from_secs(10)).is_none(),
            "cancelled stays cancelled"
        );

        prompts.begin();
        assert!(prompts.ask_pin(Duration::from_millis(20)).is_none());
        assert_eq!(prompts.current(), None);
        assert!(
            prompts.cancelled(),
            "an unanswered prompt ends the ceremony"
        );
    }
}
