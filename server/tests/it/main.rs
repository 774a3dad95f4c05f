//! The server's integration tests: one binary, a real TLS server on loopback per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod at_rest;
mod audit_log;
mod authz_matrix;
mod booking;
mod break_glass;
mod canary;
mod care_team;
mod clinic_days;
mod connections;
mod contract_fuzz;
mod coverage;
mod data_dir;
mod devices;
mod escrow;
mod export;
mod harness;
mod hours;
mod import;
mod isolation;
mod log_proofs;
mod mfa;
mod phi_access;
mod postgres_only;
mod provisioning;
mod records;
mod scale_out;
mod seed_scale;
mod sensitive;
mod tamper;
mod throttle;
mod tls_versions;
mod users;
mod vectors;
