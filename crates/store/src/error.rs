//! The store's error type.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; names the entity, e.g. `audience`.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// It cannot be deleted while other rows use it; names the entity.
    #[error("{0} is still in use")]
    InUse(&'static str),
    /// A referenced row does not exist; names the entity.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A value the database cannot hold (Postgres `text` refuses NUL): the caller's
    /// input, never a fault of the server; no stored row can equal it. Names the entity.
    #[error("{0}: a value holds a character the database cannot store")]
    Unstorable(&'static str),
    /// The database cannot be reached or is overloaded: retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data changed between reading it and writing it back: retry from the start.
    #[error("{0} changed meanwhile; try again")]
    Stale(&'static str),
    /// A stored value could not be read back (a bug or manual tampering).
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    /// The database URL names no supported backend.
    #[error("database URL must start with postgres://, postgresql:// or sqlite:")]
    InvalidUrl,
}

impl StoreError {
    /// Classifies a sqlx error; `entity` names what the statement touched.
    pub(crate) fn from_sqlx(err: sqlx::Error, entity: &'static str) -> Self {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => Self::Conflict(entity),
                ErrorKind::ForeignKeyViolation => Self::NotFound(entity),
                _ if is_unstorable_code(db.code().as_deref()) => Self::Unstorable(entity),
                _ if is_transient_db_code(db.code().as_deref()) => Self::Unavailable(err),
                _ => Self::Database(err),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            _ => Self::Database(err),
        }
    }

    /// Whether retrying later may succeed (maps to 503 + `Retry-After`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Postgres SQLSTATEs for shutdown, connection loss and overload (class 08, 53, 57P0x),
/// and SQLite's BUSY/LOCKED.
fn is_transient_db_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("53") || c.starts_with("57P0") || c == "5" || c == "6"
    })
}

/// Postgres SQLSTATEs for a parameter its encoding cannot hold: 22021
/// (`character_not_in_repertoire`, a NUL in text) and 22P05 (`untranslatable_character`).
fn is_unstorable_code(code: Option<&str>) -> bool {
    matches!(code, Some("22021" | "22P05"))
}

/// Shorthand for `map_err(|e| StoreError::from_sqlx(e, entity))`.
pub(crate) trait SqlxResultExt<T> {
    fn or_store(self, entity: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlxResultExt<T> for Result<T, sqlx::Error> {
    fn or_store(self, entity: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::from_sqlx(e, entity))
    }
}
