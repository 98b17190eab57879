//! Storage backends for kmsd. Today: [`SqliteStore`], the embedded default.

mod sqlite;

pub use sqlite::SqliteStore;
