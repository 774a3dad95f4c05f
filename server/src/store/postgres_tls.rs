//! PHI goes to a PostgreSQL database off this host only over TLS with the database's
//! certificate verified (`sslmode=verify-full`): a URL that names such a database and no
//! `sslmode` gets `verify-full`; one that asks for less (`disable`, `allow`, `prefer`,
//! `require`, `verify-ca`) is refused before any connection is made. A database on loopback
//! (an address in 127.0.0.0/8 or `::1`, `localhost`, or a Unix socket) is reached as its URL
//! says: the traffic never leaves the host. The root the certificate is checked against is
//! the URL's `sslrootcert`, or the system's roots.

use std::net::IpAddr;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::error::ServerError;

const WEAKER: ServerError = ServerError::Internal(
    "the database URL names a PostgreSQL server off loopback with an sslmode below \
     verify-full: give sslmode=verify-full (and sslrootcert if its certificate is not signed \
     by a root this host trusts)",
);

/// Whether `host` (a URL's host, or its `host` parameter) is this machine's loopback.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The `sslmode` the URL asks for itself (`sslmode` or sqlx's `ssl-mode`), if any.
fn asked_sslmode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "sslmode" || *k == "ssl-mode")
        .map(|(_, v)| v)
        .next_back()
}

/// `url` as the server may use it: unchanged for a database on loopback or one already
/// asking for `verify-full`, with `sslmode=verify-full` added when it asks for nothing, and
/// refused when it asks for less.
pub fn verified(url: &str) -> Result<String, ServerError> {
    let options = PgConnectOptions::from_str(url)?;
    if options.get_socket().is_some() || is_loopback(options.get_host()) {
        return Ok(url.to_owned());
    }
    match asked_sslmode(url) {
        Some("verify-full") => Ok(url.to_owned()),
        Some(_) => Err(WEAKER),
        None => {
            let sep = if url.contains('?') { '&' } else { '?' };
            Ok(format!("{url}{sep}sslmode=verify-full"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_means_verify_full_and_nothing_less() {
        // On loopback (addresses, name, socket): as given.
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@127.8.9.1/db?sslmode=disable",
            "postgres://u@[::1]:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::ffff:127.0.0.1]/db",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert_eq!(verified(url).unwrap(), url, "{url}");
        }
        // Off loopback, asking for nothing: verify-full is added.
        assert_eq!(
            verified("postgres://u:p@db.clinic.example:5432/db").unwrap(),
            "postgres://u:p@db.clinic.example:5432/db?sslmode=verify-full"
        );
        assert_eq!(
            verified("postgres://u@10.0.0.5/db?sslrootcert=/etc/ca.pem").unwrap(),
            "postgres://u@10.0.0.5/db?sslrootcert=/etc/ca.pem&sslmode=verify-full"
        );
        let asked = "postgres://u@db.clinic.example/db?sslmode=verify-full&sslrootcert=/ca";
        assert_eq!(verified(asked).unwrap(), asked);
        // Off loopback, asking for less: refused, whatever the spelling.
        for mode in ["disable", "allow", "prefer", "require", "verify-ca"] {
            for key in ["sslmode", "ssl-mode"] {
                let url = format!("postgres://u@db.clinic.example/db?{key}={mode}");
                assert!(verified(&url).is_err(), "{url}");
            }
        }
        // The last sslmode is the one that counts (as for the driver).
        assert!(verified("postgres://u@10.0.0.5/db?sslmode=verify-full&sslmode=disable").is_err());
        // A loopback-looking name is not loopback.
        assert!(verified("postgres://u@127.0.0.1.example.com/db?sslmode=disable").is_err());
    }
}
