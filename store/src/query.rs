//! Queries written once for both engines: `query(sql).bind(..).fetch_optional(on)`.
//!
//! On PostgreSQL a query goes through sqlx. On SQLite it runs on the calling thread
//! against the store's own connections (see `sqlite.rs` and docs/decisions/0009): a
//! statement there takes microseconds, and handing each one to a connection thread and
//! back cost more than the statement itself.

use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};

use crate::engine::{Changes, Engine, TxConn};
use crate::error::Error;
use crate::postgres;
use crate::sqlite::{self, LiteRow};
use crate::value::Value;

/// A statement and its arguments, numbered `$1`, `$2`, … in `sql`.
#[must_use = "a query does nothing until it is executed"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
    persistent: bool,
}

/// Start a query.
pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
        persistent: true,
    }
}

/// Where a query goes on PostgreSQL: the transaction's connection or the pool.
enum PgOn<'a> {
    Conn(&'a mut sqlx::AnyConnection),
    Pool(&'a sqlx::AnyPool),
    /// A write of its own on the pool: counted in the store's changes once done.
    Write(&'a sqlx::AnyPool, &'a Changes),
}

/// On SQLite, run `f` on the connection `on` stands for (the transaction's, the writer
/// waited for, or a reader) and return its result; on PostgreSQL, say where to go.
async fn route<'a, T>(
    on: On<'a>,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, Error>,
) -> Result<Result<T, Error>, PgOn<'a>> {
    match on.0 {
        Place::Tx(conn) => match conn {
            TxConn::Lite(writer) => Ok(writer.check_open().and_then(|()| {
                let done = f(&mut writer.conn);
                if done.is_err() {
                    // An error that rolled back the whole transaction ends its group too.
                    let _ = writer.check_open();
                }
                done
            })),
            TxConn::Pg(tx) => Err(PgOn::Conn(tx.conn())),
            TxConn::Ended => Ok(Err(Error::other("transaction ended"))),
        },
        Place::Read(engine) => match engine {
            Engine::Lite(lite) => Ok(lite.read(f)),
            Engine::Pg(pool) => Err(PgOn::Pool(pool)),
        },
        Place::Write(engine, changes) => match engine {
            Engine::Lite(lite) => Ok(lite.write(f).await.inspect(|_| changes.committed())),
            Engine::Pg(pool) => Err(PgOn::Write(pool, changes)),
        },
    }
}

/// Run a sqlx call (`|executor| ...`) where `route` said to go.
macro_rules! on_pg {
    ($pg:expr, |$e:ident| $call:expr) => {
        match $pg {
            PgOn::Conn($e) => $call.map_err(postgres::error),
            PgOn::Pool($e) => $call.map_err(postgres::error),
            PgOn::Write($e, changes) => {
                let done = $call.map_err(postgres::error);
                if done.is_ok() {
                    changes.committed();
                }
                done
            }
        }
    };
}

/// Where a query runs: inside a write transaction (`&mut tx`), a read outside any
/// (`Store::reader`), or a write of its own, atomic by itself (`Store::writer`).
pub struct On<'a>(Place<'a>);

/// What `On` holds of the transaction or the store: their connections, not them, so
/// that queries sit below both.
enum Place<'a> {
    Tx(&'a mut TxConn),
    Read(&'a Engine),
    Write(&'a Engine, &'a Changes),
}

impl<'a> On<'a> {
    pub(crate) fn tx(conn: &'a mut TxConn) -> On<'a> {
        On(Place::Tx(conn))
    }

    pub(crate) fn read(engine: &'a Engine) -> On<'a> {
        On(Place::Read(engine))
    }

    pub(crate) fn write(engine: &'a Engine, changes: &'a Changes) -> On<'a> {
        On(Place::Write(engine, changes))
    }

    /// The same place again, for another query.
    pub fn reborrow(&mut self) -> On<'_> {
        On(match &mut self.0 {
            Place::Tx(conn) => Place::Tx(conn),
            Place::Read(engine) => Place::Read(engine),
            Place::Write(engine, changes) => Place::Write(engine, changes),
        })
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Don't keep the prepared statement (SQL built per call, e.g. `IN` lists).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Run it; the number of rows it changed.
    pub async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<u64, Error> {
        match route(on.into(), |conn| sqlite::execute(conn, self.statement())).await {
            Ok(done) => done,
            Err(pg) => Ok(on_pg!(pg, |e| self.any().execute(e).await)?.rows_affected()),
        }
    }

    pub async fn fetch_all<'a>(self, on: impl Into<On<'a>>) -> Result<Vec<Row>, Error> {
        match route(on.into(), |conn| {
            sqlite::fetch(conn, self.statement(), usize::MAX)
        })
        .await
        {
            Ok(rows) => Ok(rows?.into_iter().map(Row::lite).collect()),
            Err(pg) => {
                let rows = on_pg!(pg, |e| self.any().fetch_all(e).await)?;
                Ok(rows.into_iter().map(Row::any).collect())
            }
        }
    }

    pub async fn fetch_optional<'a>(self, on: impl Into<On<'a>>) -> Result<Option<Row>, Error> {
        match route(on.into(), |conn| sqlite::fetch(conn, self.statement(), 1)).await {
            Ok(rows) => Ok(rows?.into_iter().next().map(Row::lite)),
            Err(pg) => Ok(on_pg!(pg, |e| self.any().fetch_optional(e).await)?.map(Row::any)),
        }
    }

    pub async fn fetch_one<'a>(self, on: impl Into<On<'a>>) -> Result<Row, Error> {
        self.fetch_optional(on).await?.ok_or(Error::NoRow)
    }

    /// The first column of the one row it returns.
    pub async fn scalar<'a, T: Decode>(self, on: impl Into<On<'a>>) -> Result<T, Error> {
        self.fetch_one(on).await?.get_at(0)
    }

    /// Every row, mapped.
    pub async fn fetch_all_as<'a, T: FromRow>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Vec<T>, Error> {
        self.fetch_all(on).await?.iter().map(T::from_row).collect()
    }

    /// The first row, if any, mapped.
    pub async fn fetch_optional_as<'a, T: FromRow>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Option<T>, Error> {
        self.fetch_optional(on)
            .await?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }

    /// The one row, mapped.
    pub async fn fetch_one_as<'a, T: FromRow>(self, on: impl Into<On<'a>>) -> Result<T, Error> {
        T::from_row(&self.fetch_one(on).await?)
    }

    /// The first column of every row it returns.
    pub async fn scalars<'a, T: Decode>(self, on: impl Into<On<'a>>) -> Result<Vec<T>, Error> {
        let rows = self.fetch_all(on).await?;
        rows.iter().map(|row| row.get_at(0)).collect()
    }

    fn statement(&self) -> sqlite::Statement<'_> {
        sqlite::Statement {
            sql: self.sql,
            args: &self.args,
            persistent: self.persistent,
        }
    }

    fn any(self) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query(self.sql).persistent(self.persistent);
        for arg in self.args {
            query = match arg {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Blob(v) => query.bind(v),
            };
        }
        query
    }
}

/// A row of either engine.
pub struct Row(RowRepr);

enum RowRepr {
    Any(AnyRow),
    Lite(LiteRow),
}

impl Row {
    fn any(row: AnyRow) -> Row {
        Row(RowRepr::Any(row))
    }

    fn lite(row: LiteRow) -> Row {
        Row(RowRepr::Lite(row))
    }

    /// The value of `column`; an error (never a panic) when the row has no such column
    /// or it does not decode as `T`: a query that does not match its table.
    pub fn get<T: Decode>(&self, column: &str) -> Result<T, Error> {
        match &self.0 {
            RowRepr::Any(row) => T::from_any(row, column).map_err(postgres::error),
            RowRepr::Lite(row) => {
                T::from_lite(row.value(column)?).map_err(|err| decode(column, err))
            }
        }
    }

    pub fn get_at<T: Decode>(&self, index: usize) -> Result<T, Error> {
        match &self.0 {
            RowRepr::Any(row) => T::from_any(row, index).map_err(postgres::error),
            RowRepr::Lite(row) => {
                T::from_lite(row.value_at(index)?).map_err(|err| decode(&index.to_string(), err))
            }
        }
    }
}

impl Row {
    /// A text column parsed into `T` (an enum stored by name).
    pub fn parse<T>(&self, column: &str) -> Result<T, Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let text: String = self.get(column)?;
        text.parse()
            .map_err(|err: T::Err| decode(column, format!("{text:?}: {err}")))
    }

    /// A nullable text column parsed into `T`.
    pub fn parse_optional<T>(&self, column: &str) -> Result<Option<T>, Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let text: Option<String> = self.get(column)?;
        text.map(|text| {
            text.parse()
                .map_err(|err: T::Err| decode(column, format!("{text:?}: {err}")))
        })
        .transpose()
    }
}

/// A type read from a row: its mapping says which column is which, and a mismatch is
/// an error of the query, never a panic.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, Error>;
}

fn decode(column: &str, err: String) -> Error {
    Error::decode(column, err)
}

/// A Rust type a column decodes to, on either engine (implemented here for the column
/// types and the contracts' ids and times; the engines' rows stay inside the store).
pub trait Decode: Sized {
    #[doc(hidden)]
    fn from_any<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, index: I) -> Result<Self, sqlx::Error>;
    #[doc(hidden)]
    fn from_lite(value: &rusqlite::types::Value) -> Result<Self, String>;
}

macro_rules! decode {
    ($($ty:ty: $pattern:pat => $value:expr),* $(,)?) => {$(
        impl Decode for $ty {
            fn from_any<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, index: I)
                -> Result<Self, sqlx::Error> {
                row.try_get(index)
            }
            fn from_lite(value: &rusqlite::types::Value) -> Result<Self, String> {
                use rusqlite::types::Value as V;
                match value {
                    $pattern => Ok($value),
                    other => Err(format!(
                        "expected {}, found {:?}", stringify!($ty), other.data_type()
                    )),
                }
            }
        }
        impl Decode for Option<$ty> {
            fn from_any<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, index: I)
                -> Result<Self, sqlx::Error> {
                row.try_get(index)
            }
            fn from_lite(value: &rusqlite::types::Value) -> Result<Self, String> {
                match value {
                    rusqlite::types::Value::Null => Ok(None),
                    other => <$ty>::from_lite(other).map(Some),
                }
            }
        }
    )*};
}

decode!(
    i64: V::Integer(v) => *v,
    bool: V::Integer(v) => *v != 0,
    String: V::Text(v) => v.clone(),
    Vec<u8>: V::Blob(v) => v.clone(),
);

/// Typed ids (text columns) and times (integer columns): `$ty: From<$column>`.
macro_rules! decode_as {
    ($column:ty: $($ty:ty),* $(,)?) => {$(
        impl Decode for $ty {
            fn from_any<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, index: I)
                -> Result<Self, sqlx::Error> {
                <$column>::from_any(row, index).map(<$ty>::from)
            }
            fn from_lite(value: &rusqlite::types::Value) -> Result<Self, String> {
                <$column>::from_lite(value).map(<$ty>::from)
            }
        }
        impl Decode for Option<$ty> {
            fn from_any<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, index: I)
                -> Result<Self, sqlx::Error> {
                Option::<$column>::from_any(row, index).map(|v| v.map(<$ty>::from))
            }
            fn from_lite(value: &rusqlite::types::Value) -> Result<Self, String> {
                Option::<$column>::from_lite(value).map(|v| v.map(<$ty>::from))
            }
        }
    )*};
}

decode_as!(String:
    ticketing_contracts::UserId,
    ticketing_contracts::TicketId,
    ticketing_contracts::OrderId,
    ticketing_contracts::PaymentId,
    ticketing_contracts::PassId,
    ticketing_contracts::ids::CancellationId,
);

// Times are integer columns (milliseconds since the epoch).
decode_as!(i64: ticketing_contracts::time::Timestamp);
