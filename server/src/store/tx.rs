//! The store's transactions. One rule for opening one (ARCHITECTURE.md):
//! - [`Store::clinic_tx`] for every read or write of a clinic's data: it carries the
//!   [`ClinicScope`], and on PostgreSQL names the clinic for row-level security.
//! - [`Store::begin_write`] for the busy write paths (audit uploads, the server's audit
//!   events, provisioning): on SQLite it waits its turn in-process and begins `IMMEDIATE`.
//! - [`Store::tx`] for the rest: rows that are not a clinic's data (sessions by token hash,
//!   devices by id, login nonces, sign-in counts), before any scope exists.
//!
//! Store functions that write take the transaction they run in, so a domain operation
//! composes several writes in one commit without writing SQL again.

use super::*;

/// A write transaction from [`Store::begin_write`]; derefs to its connection like a
/// `Transaction` does. Dropped uncommitted, it rolls back.
pub struct WriteTx {
    // Declared first, so it is dropped (rolled back) before the turn is given up.
    pub(super) tx: Transaction<'static, Any>,
    pub(super) backend: Backend,
    pub(super) _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        super::capacity::note_written();
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// Makes this transaction the only writer of the clinic's audit chains and log until it
    /// ends. On SQLite it already is (it began `IMMEDIATE`); on PostgreSQL this takes the
    /// clinic row's lock ([`super::clinics::lock_clinic`]).
    pub async fn lock_clinic(&mut self, clinic: Uuid) -> Result<(), ServerError> {
        match self.backend {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => super::clinics::lock_clinic(&mut self.tx, clinic).await,
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A pooled SQLite connection that may be inside a transaction sqlx does not know of (one a
/// script began with its own `BEGIN`). Unless released once that transaction has ended,
/// dropping it (an error, a cancelled request) closes the connection instead of returning
/// it to the pool: SQLite then rolls the transaction back, and no later user of the pool
/// finds itself inside it.
pub(super) struct OwnTransaction(pub(super) Option<PoolConnection<Any>>);

impl OwnTransaction {
    /// Back to the pool: the transaction has ended.
    pub(super) fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for OwnTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}

/// A transaction within one clinic, from [`Store::clinic_tx`]: it carries its
/// [`ClinicScope`], so a store function that takes it reads the clinic from it and cannot be
/// handed another. Derefs to its connection; dropped uncommitted, it rolls back.
pub struct ClinicTx {
    tx: Transaction<'static, Any>,
    scope: ClinicScope,
}

impl ClinicTx {
    pub fn scope(&self) -> &ClinicScope {
        &self.scope
    }

    pub fn clinic_id(&self) -> Uuid {
        self.scope.clinic_id()
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        super::capacity::note_written();
        Ok(())
    }
}

impl std::ops::Deref for ClinicTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for ClinicTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// A transaction for one of the busy write paths (audit uploads, the server's audit
    /// events, provisioning). SQLite lets one writer at a time, and a writer that finds the
    /// file locked sleeps in growing steps (up to 100 ms) before it looks again, so under
    /// load most of the time went to sleeping; here they queue in this process instead,
    /// first come first served. PostgreSQL needs no turn (row locks order writers there).
    ///
    /// On SQLite the transaction begins `IMMEDIATE`: it holds the file's write lock from
    /// its first statement, so other processes' writers (a `seed` beside the server) wait
    /// for it in the busy handler, and nothing it reads can go stale before it writes.
    pub async fn begin_write(&self) -> Result<WriteTx, ServerError> {
        let (turn, tx) = match self.backend {
            Backend::Sqlite => (
                Some(Arc::clone(&self.writer).lock_owned().await),
                self.pool.begin_with("BEGIN IMMEDIATE").await?,
            ),
            Backend::Postgres => (None, self.pool.begin().await?),
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _turn: turn,
        })
    }

    /// [`Store::begin_write`] for background work that a workstation sends again if it
    /// must (an audit upload), holding the clinic's audit lock ([`WriteTx::lock_clinic`]).
    /// Such writers wait for that lock one at a time (on SQLite for the write turn, which
    /// all clinics share; on PostgreSQL for the clinic's row, per clinic and instance): a
    /// person's write (a chart read's audit event, a sign-in) then waits behind at most one
    /// upload however many workstations upload at once, where it waited behind all of
    /// them, and one upload is always next, so the lock is never idle while uploads wait.
    pub async fn begin_background_write(&self, clinic: Uuid) -> Result<WriteTx, ServerError> {
        let line = match self.backend {
            Backend::Sqlite => self.background.of(Uuid::nil()),
            Backend::Postgres => self.background.of(clinic),
        };
        let _next_in_line = line.lock().await;
        let mut tx = self.begin_write().await?;
        tx.lock_clinic(clinic).await?;
        Ok(tx)
    }

    /// Runs `script` as one transaction that holds the clinic's audit lock, for a write
    /// that needs nothing read first (a server event written from a known tip). On SQLite,
    /// in the write turn and in one round through the driver: `BEGIN IMMEDIATE`, the
    /// statements and `COMMIT` as one text, where a transaction begun and committed by
    /// `Transaction` costs two rounds more. On PostgreSQL, in a transaction that first
    /// takes the clinic row's lock.
    pub(crate) async fn write_locked(
        &self,
        clinic: Uuid,
        script: Script,
    ) -> Result<(), ServerError> {
        match self.backend {
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                tx.lock_clinic(clinic).await?;
                script.execute(&mut tx).await?;
                tx.commit().await?;
            }
            Backend::Sqlite => {
                let _turn = self.writer.lock().await;
                let mut own = OwnTransaction(Some(self.pool.acquire().await?));
                let Some(conn) = own.0.as_mut() else {
                    return Err(ServerError::Internal("connection missing"));
                };
                if let Err(e) = script.in_transaction("BEGIN IMMEDIATE").execute(conn).await {
                    // A statement failed and the transaction is still open: end it here, or
                    // (if even that fails) let the guard close the connection.
                    if sqlx::query("ROLLBACK").execute(&mut **conn).await.is_ok() {
                        own.release();
                    }
                    return Err(e.into());
                }
                own.release();
            }
        }
        Ok(())
    }

    /// A transaction in which row-level security (on PostgreSQL) shows only the scope's
    /// clinic. Every read or write of clinical rows goes through one.
    pub async fn clinic_tx(&self, scope: &ClinicScope) -> Result<ClinicTx, ServerError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('clinicdesk.clinic_id', $1, true)")
                .bind(scope.clinic_id().to_string())
                .execute(&mut *tx)
                .await?;
        }
        Ok(ClinicTx {
            tx,
            scope: scope.clone(),
        })
    }

    /// Names the scope's clinic for row-level security in `tx`, a transaction begun with
    /// [`Store::tx`] before the clinic was known (an enrollment learns it from the code it
    /// redeems in the same transaction). From then on it is a clinic's transaction.
    pub async fn enter_clinic(
        &self,
        tx: &mut Transaction<'static, Any>,
        scope: &ClinicScope,
    ) -> Result<(), ServerError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT set_config('clinicdesk.clinic_id', $1, true)")
                .bind(scope.clinic_id().to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A transaction for rows that are not a clinic's data (see the module's rule).
    pub async fn tx(&self) -> Result<Transaction<'static, Any>, ServerError> {
        Ok(self.pool.begin().await?)
    }
}
