//! Signing in through the API as the app does, for the benchmarks: a challenge for the
//! workstation, the password with the device key's proof, then the second factor (TOTP).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use clinicdesk_protocol::audit::to_hex;
use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, TotpSetup};
use clinicdesk_protocol::wire::{LoginResponse, login_proof_bytes};
use clinicdesk_server::sign_in::mfa::totp::TotpSecret;
use clinicdesk_server::time::{Clock, SystemClock};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use uuid::Uuid;

/// Who signs in, where: the workstation's key and id, and the server instances asked (the
/// challenge of the first, the password to the second: one server seen through two).
pub(crate) struct SignIn<'a> {
    pub(crate) client: &'a reqwest::Client,
    pub(crate) urls: (&'a str, &'a str),
    pub(crate) key: &'a SigningKey,
    pub(crate) device: Uuid,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
}

/// How often a sign-in asked to wait tries again.
const TRIES: usize = 10;

impl SignIn<'_> {
    /// The password step. Asked to wait (429, as an address's attempts being checked at
    /// once fill its window), it waits as `Retry-After` says, counts it in `waits` and
    /// tries again with a new challenge (each attempt spends its own).
    pub(crate) async fn password(&self, waits: &AtomicUsize) -> anyhow::Result<LoginStep> {
        for _ in 0..TRIES {
            let challenge: serde_json::Value = self
                .client
                .post(format!("{}/v1/auth/challenge", self.urls.0))
                .json(&json!({ "device_id": self.device }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let nonce = challenge["nonce"].as_str().context("nonce")?.to_owned();
            let proof = self
                .key
                .sign(&login_proof_bytes(&nonce, self.device, self.username));
            let response = self
                .client
                .post(format!("{}/v1/auth/login", self.urls.1))
                .json(&json!({
                    "username": self.username,
                    "password": self.password,
                    "device_id": self.device,
                    "nonce": nonce,
                    "device_signature": to_hex(&proof.to_bytes()),
                }))
                .send()
                .await?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                waits.fetch_add(1, Ordering::Relaxed);
                let seconds = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                continue;
            }
            return Ok(response.error_for_status()?.json().await?);
        }
        anyhow::bail!("a sign-in was still asked to wait after {TRIES} tries")
    }

    /// A first sign-in, which sets up TOTP: (its secret, the session token).
    pub(crate) async fn first(&self, waits: &AtomicUsize) -> anyhow::Result<(String, String)> {
        let LoginStep::SetUpSecondFactor(ticket) = self.password(waits).await? else {
            anyhow::bail!("a first sign-in sets up a second factor");
        };
        let setup: TotpSetup = self
            .post(
                "/v1/auth/mfa/setup/totp",
                json!({ "ticket": ticket.ticket }),
            )
            .await?;
        let secret = setup.secret_base32.expose().to_owned();
        let code = TotpSecret::from_base32(&secret)?.code_at(now_secs()?)?;
        let enrolled: MfaEnrolled = self
            .post(
                "/v1/auth/mfa/setup/totp/confirm",
                json!({ "ticket": ticket.ticket, "code": code }),
            )
            .await?;
        Ok((secret, enrolled.session.session_token.expose().to_owned()))
    }

    /// A later sign-in: the password, then the code of `totp` for the next time step (the
    /// current one may be spent already; one step of skew is accepted): the session token.
    pub(crate) async fn again(&self, totp: &str, waits: &AtomicUsize) -> anyhow::Result<String> {
        let LoginStep::SecondFactor(ticket) = self.password(waits).await? else {
            anyhow::bail!("a later sign-in asks for the second factor");
        };
        let code = TotpSecret::from_base32(totp)?.code_at(now_secs()? + 30)?;
        let session: LoginResponse = self
            .post(
                "/v1/auth/mfa/totp",
                json!({ "ticket": ticket.ticket, "code": code }),
            )
            .await?;
        Ok(session.session_token.expose().to_owned())
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        Ok(self
            .client
            .post(format!("{}{path}", self.urls.0))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

fn now_secs() -> anyhow::Result<u64> {
    Ok(u64::try_from(SystemClock.now_ms() / 1000)?)
}
