//! Liveness, and whether the server can record what it serves ([`crate::store::capacity`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::wire::Health;

use crate::AppState;
use crate::store::{Backend, capacity};

#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, body = Health),
    (status = 503, body = Health, description = "up, but out of space: `problem` is `storage_full`")
))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    // The embedded store's filesystem can be asked, and is this state's own; PostgreSQL's is
    // the database's to watch, and only its refused writes show here (remembered per process:
    // one server per process in a deployment).
    let full = match state.store.backend() {
        Backend::Sqlite => {
            capacity::free_bytes(&state.data_dir).is_some_and(|b| b < capacity::FREE_FLOOR_BYTES)
        }
        Backend::Postgres => capacity::recently_full(),
    };
    let (status, word) = if full {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        status,
        Json(Health {
            status: word.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            problem: full.then(|| "storage_full".to_owned()),
        }),
    )
}
