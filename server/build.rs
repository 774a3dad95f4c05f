//! `sqlx::migrate!` embeds the migrations when the crate compiles, and nothing else tells
//! cargo that a migration file was added or changed: without this, a build right after
//! adding one ran the old set until some source file changed too.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
