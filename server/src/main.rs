//! `clinicdesk-server`: serve the API over TLS, seed the synthetic demo clinic, issue
//! enrollment codes, revoke devices. All state of the embedded default lives under `--data-dir`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clinicdesk_server::clock::SystemClock;
use clinicdesk_server::store::Store;
use clinicdesk_server::{AppState, build_router, operator, seed, tls};

#[derive(Parser)]
#[command(name = "clinicdesk-server", version, about = "The ClinicDesk server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over TLS (1.2 and 1.3 only).
    Serve {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
    /// Write the synthetic demo clinic and print its logins and a one-time enrollment code.
    Seed {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        /// Print the report as JSON (for scripts and tests).
        #[arg(long)]
        json: bool,
        /// Minutes until the enrollment code expires.
        #[arg(long, default_value_t = 15)]
        code_ttl_mins: i64,
    },
    /// Issue a one-time device enrollment code for a clinic.
    EnrollmentCode {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        clinic: uuid::Uuid,
        #[arg(long, default_value_t = 15)]
        ttl_mins: i64,
    },
    /// Revoke a device: its sessions end, and the app wipes itself on its next contact.
    RevokeDevice {
        #[arg(long, env = "CLINICDESK_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        device: uuid::Uuid,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { data_dir, listen } => serve(data_dir, listen).await,
        Command::Seed {
            data_dir,
            json,
            code_ttl_mins,
        } => {
            let store = open_store(&data_dir).await?;
            let report = seed::seed_demo(&store, &SystemClock, code_ttl_mins)
                .await
                .context("seeding the demo clinic")?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &report)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "Demo clinic: {} ({})",
                    report.clinic_name, report.clinic_id
                )?;
                writeln!(
                    out,
                    "Device enrollment code: {} (one use, expires in {} minutes)",
                    report.enrollment_code, report.enrollment_code_expires_in_mins
                )?;
                writeln!(out, "Demo logins (synthetic, regenerated on every seed):")?;
                for u in &report.users {
                    writeln!(
                        out,
                        "  {:<10} {:<12} password {}",
                        u.username,
                        u.role.as_str(),
                        u.password
                    )?;
                }
            }
            Ok(())
        }
        Command::EnrollmentCode {
            data_dir,
            clinic,
            ttl_mins,
        } => {
            let store = open_store(&data_dir).await?;
            let code = seed::issue_enrollment_code(&store, &SystemClock, clinic, ttl_mins)
                .await
                .context("issuing an enrollment code (is the clinic id right?)")?;
            writeln!(std::io::stdout(), "{code}")?;
            Ok(())
        }
        Command::RevokeDevice { data_dir, device } => {
            let store = open_store(&data_dir).await?;
            if !operator::revoke_device(&store, &SystemClock, device)
                .await
                .context("revoking the device")?
            {
                anyhow::bail!("no device {device} on this server");
            }
            writeln!(std::io::stdout(), "revoked {device}")?;
            Ok(())
        }
    }
}

async fn open_store(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    Store::open(data_dir)
        .await
        .with_context(|| format!("opening the database under {}", data_dir.display()))
}

async fn serve(data_dir: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    let store = open_store(&data_dir).await?;
    let files = tls::ensure_local_ca(&data_dir).context("preparing TLS certificates")?;
    let config = tls::server_config(&files)?;
    let router = build_router(AppState {
        store,
        clock: Arc::new(SystemClock),
    })?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // One machine-readable line on stdout for scripts and tests; the rest goes to stderr.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "listening https://{addr} ca={}",
        files.ca_cert.display()
    )?;
    out.flush()?;
    drop(out);
    tracing::info!(%addr, "serving over TLS");
    tokio::select! {
        () = tls::serve(listener, config, router) => Ok(()),
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("shutting down"); Ok(()) }
    }
}
