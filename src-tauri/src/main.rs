//! The ClinicDesk desktop app's entry point.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(clinicdesk_app::log_filter::log_filter(
            std::env::var("RUST_LOG").ok().as_deref(),
        ))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = clinicdesk_app::commands::run() {
        tracing::error!(error = %e, "the app could not start");
        std::process::exit(1);
    }
}
