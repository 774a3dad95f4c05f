//! A throwaway PostgreSQL cluster on loopback for the server suite's PostgreSQL leg: made
//! with initdb in a fresh directory under the system temp dir (which the `postgres` user
//! can reach when we run as root), started with pg_ctl on a free port, stopped and removed when
//! dropped. Durability is switched off (fsync, synchronous commit): nothing here outlives
//! the run. It speaks TLS too, with a certificate for `localhost` and `127.0.0.1` from a CA
//! of its own ([`Cluster::ca_file`]), for the test of the server's verified TLS to its
//! database; the admin URL the suite gets asks for no TLS, as before.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian's PostgreSQL 15 binaries (package postgresql-15, installed by the setup).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    dir: PathBuf,
    port: u16,
    /// initdb refuses to run as root, so as root the cluster runs as the `postgres` user.
    run_as_postgres: bool,
}

impl Cluster {
    pub fn start() -> Result<Self> {
        let run_as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("clinicdesk-postgres-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).context("clearing an old throwaway cluster")?;
        }
        std::fs::create_dir_all(&dir)?;
        if run_as_postgres {
            crate::run_cmd(Command::new("chown").arg("postgres:").arg(&dir))?;
        }
        let port = free_port()?;
        let cluster = Self {
            dir,
            port,
            run_as_postgres,
        };
        let data = cluster.dir.join("data");
        cluster
            .run(
                Command::new(Path::new(PG_BIN).join("initdb"))
                    .args([
                        "-U",
                        "postgres",
                        "-A",
                        "trust",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "-D",
                    ])
                    .arg(&data),
            )
            .context("initdb")?;
        cluster
            .make_certificates()
            .context("making the cluster's TLS certificates")?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {dir} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
             -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
            dir = cluster.dir.display()
        );
        cluster
            .run(
                Command::new(Path::new(PG_BIN).join("pg_ctl"))
                    .args(["-w", "-D"])
                    .arg(&data)
                    .arg("-l")
                    .arg(cluster.dir.join("server.log"))
                    .args(["-o", &options, "start"]),
            )
            .context("pg_ctl start")?;
        Ok(cluster)
    }

    /// The superuser's URL (trust authentication on loopback, throwaway cluster), without
    /// TLS: the suite's traffic stays as it was; the TLS test asks for it itself.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The CA that signed the cluster's TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA and a server certificate it signs for `localhost` and `127.0.0.1` (P-256, two
    /// days), made by the user the cluster runs as, so the key is theirs and private.
    fn make_certificates(&self) -> Result<()> {
        // Absolute paths: as root, `run` goes through runuser, which keeps no working directory.
        let at = |name: &str| self.dir.join(name).display().to_string();
        std::fs::write(
            at("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )?;
        let openssl =
            |args: &[&str]| -> Result<()> { self.run(Command::new("openssl").args(args)) };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let (ca_key, ca, key, csr, crt, ext) = (
            at("ca.key"),
            at("ca.pem"),
            at("server.key"),
            at("server.csr"),
            at("server.crt"),
            at("server.ext"),
        );
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", &ca_key, "-out", &ca, "-days", "2"],
                &["-subj", "/CN=ClinicDesk test database CA"],
            ]
            .concat(),
        )?;
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"],
            ]
            .concat(),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ])
    }

    fn run(&self, cmd: &mut Command) -> Result<()> {
        let status = if self.run_as_postgres {
            let mut wrapped = Command::new("runuser");
            wrapped
                .args(["-u", "postgres", "--"])
                .arg(cmd.get_program());
            wrapped.args(cmd.get_args());
            wrapped.stdout(std::process::Stdio::null()).status()
        } else {
            cmd.stdout(std::process::Stdio::null()).status()
        }
        .with_context(|| format!("running {}", cmd.get_program().to_string_lossy()))?;
        if !status.success() {
            bail!(
                "{} failed ({status}); see {}",
                cmd.get_program().to_string_lossy(),
                self.dir.join("server.log").display()
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(
            Command::new(Path::new(PG_BIN).join("pg_ctl"))
                .args(["-m", "immediate", "-w", "-D"])
                .arg(self.dir.join("data"))
                .arg("stop"),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
