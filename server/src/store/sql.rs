//! Statements assembled at run time with numbered placeholders (`$1`, `$2`, ...), the form
//! both SQLite and PostgreSQL read. (sqlx's `QueryBuilder` writes `?` for the Any driver,
//! which PostgreSQL rejects.) Big statements can be sent to SQLite with anonymous `?`
//! placeholders instead ([`Statement::query_for`]): SQLite finds a numbered placeholder's
//! name by a linear scan, so binding n of them costs n², a tenth of an audit upload's time
//! with 1,200 placeholders per INSERT.

use std::fmt::Write;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

use crate::store::Backend;

pub(crate) enum Value {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Blob(Vec<u8>),
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

#[derive(Default)]
pub(crate) struct Statement {
    sql: String,
    /// The same statement with anonymous `?` placeholders, for SQLite.
    anonymous: String,
    values: Vec<Value>,
}

impl Statement {
    pub(crate) fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            anonymous: sql.to_owned(),
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self.anonymous.push_str(sql);
        self
    }

    /// Appends the next placeholder and the value it stands for.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "${}", self.values.len());
        self.anonymous.push('?');
        self
    }

    /// The statement with numbered placeholders, which both databases read.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments> {
        self.query_text(&self.sql)
    }

    /// The statement in the placeholders `backend` binds fastest.
    pub(crate) fn query_for(&self, backend: Backend) -> Query<'_, Any, AnyArguments> {
        match backend {
            Backend::Sqlite => self.query_text(&self.anonymous),
            Backend::Postgres => self.query_text(&self.sql),
        }
    }

    fn query_text(&self, sql: &str) -> Query<'_, Any, AnyArguments> {
        self.values
            .iter()
            // Every value went in through `bind`; the text is the caller's fixed fragments.
            .fold(sqlx::query(AssertSqlSafe(sql.to_owned())), |q, v| match v {
                Value::Text(s) => q.bind(s.as_str()),
                Value::OptText(s) => q.bind(s.as_deref()),
                Value::Int(i) => q.bind(*i),
                Value::Blob(b) => q.bind(b.as_slice()),
            })
    }
}

/// Statements that run together, in order: sent to SQLite as one text, so one round
/// through the driver's worker thread (~50 us each) instead of one per statement, its
/// anonymous placeholders bound in order across the statements; sent to PostgreSQL one by
/// one, whose extended protocol takes one statement per query.
#[derive(Default)]
pub(crate) struct Script {
    statements: Vec<Statement>,
}

impl Script {
    pub(crate) fn push(&mut self, statement: Statement) -> &mut Self {
        self.statements.push(statement);
        self
    }

    pub(crate) fn extend(&mut self, statements: impl IntoIterator<Item = Statement>) -> &mut Self {
        self.statements.extend(statements);
        self
    }

    /// Its statements, to run as part of a bigger script.
    pub(crate) fn into_statements(self) -> Vec<Statement> {
        self.statements
    }

    /// The same statements between `begin` and `COMMIT`.
    pub(crate) fn in_transaction(self, begin: &str) -> Script {
        let mut whole = Script::default();
        whole
            .push(Statement::new(begin))
            .extend(self.statements)
            .push(Statement::new("COMMIT"));
        whole
    }

    /// The statements as one, for SQLite.
    fn joined(self) -> Statement {
        let mut joined = Statement::default();
        for (i, statement) in self.statements.into_iter().enumerate() {
            // Only the anonymous text is joined: numbers restart in each statement.
            if i > 0 {
                joined.anonymous.push_str(";\n");
            }
            joined.anonymous.push_str(&statement.anonymous);
            joined.values.extend(statement.values);
        }
        joined
    }

    pub(crate) async fn execute(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self.statements.is_empty() {
            return Ok(());
        }
        match Backend::of(conn) {
            Backend::Sqlite => {
                self.joined()
                    .query_for(Backend::Sqlite)
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Postgres => {
                for statement in &self.statements {
                    statement.query().execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }
}

/// Rows per multi-row INSERT: one statement instead of one per row (each statement costs
/// a round through the driver), well under both databases' limits on placeholders.
const ROWS_PER_INSERT: usize = 100;

/// Multi-row INSERTs of `rows` after `head` (`INSERT INTO t (a, b) VALUES `), each row's
/// values bound in order; `tail` (e.g. an `ON CONFLICT` clause) ends each statement.
pub(crate) fn insert_rows(head: &str, tail: &str, rows: Vec<Vec<Value>>) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut statement = Statement::new(head);
        for (n, row) in rows.by_ref().take(ROWS_PER_INSERT).enumerate() {
            statement.push(if n == 0 { "(" } else { ", (" });
            for (i, value) in row.into_iter().enumerate() {
                if i > 0 {
                    statement.push(", ");
                }
                statement.bind(value);
            }
            statement.push(")");
        }
        statement.push(tail);
        statements.push(statement);
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::{ROWS_PER_INSERT, Statement, Value, insert_rows};

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut s = Statement::new("SELECT 1 WHERE a = ");
        s.bind("x")
            .push(" AND b IN (")
            .bind(1_i64)
            .push(", ")
            .bind(2_i64)
            .push(")");
        assert_eq!(s.sql, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(s.anonymous, "SELECT 1 WHERE a = ? AND b IN (?, ?)");
        assert_eq!(s.values.len(), 3);
    }

    #[test]
    fn rows_are_inserted_in_bounded_statements() {
        let row = |i: i64| vec![Value::Int(i), Value::from("x")];
        let one = insert_rows("INSERT INTO t (a, b) VALUES ", "", vec![row(1), row(2)]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        let many = insert_rows(
            "INSERT INTO t (a, b) VALUES ",
            " ON CONFLICT DO NOTHING",
            (0..=ROWS_PER_INSERT as i64).map(row).collect(),
        );
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].values.len(), ROWS_PER_INSERT * 2);
        assert_eq!(
            many[1].sql,
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
        assert!(insert_rows("INSERT INTO t (a) VALUES ", "", Vec::new()).is_empty());
    }
}
