//! Statements assembled at run time with numbered placeholders (`$1`, `$2`, ...), the form
//! both SQLite and PostgreSQL read. (sqlx's `QueryBuilder` writes `?` for the Any driver,
//! which PostgreSQL rejects.)

use std::fmt::Write;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

pub(crate) enum Value {
    Text(String),
    Int(i64),
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
    values: Vec<Value>,
}

impl Statement {
    pub(crate) fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the next placeholder and the value it stands for.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "${}", self.values.len());
        self
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments> {
        self.values
            .iter()
            // Every value went in through `bind`; the text is the caller's fixed fragments.
            .fold(
                sqlx::query(AssertSqlSafe(self.sql.clone())),
                |q, v| match v {
                    Value::Text(s) => q.bind(s.as_str()),
                    Value::Int(i) => q.bind(*i),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::Statement;

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
        assert_eq!(s.values.len(), 3);
    }
}
