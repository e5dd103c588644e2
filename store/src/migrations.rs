//! A service's migrations: SQL files in its `migrations/` folder, one set for both
//! engines, embedded in the binary and applied in order when a store opens (`Store::open`).
//!
//! They are recorded as sqlx records them (`_sqlx_migrations`, a SHA-384 of each file),
//! so databases migrated before keep their history.
//!
//! A file whose first line is `-- postgres only` changes what only PostgreSQL has (a
//! constraint SQLite cannot drop, an index option): on SQLite it is recorded and runs
//! nothing.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::Backend;

/// The first line of a migration that SQLite skips.
const POSTGRES_ONLY: &str = "-- postgres only";

/// What SQLite runs (and records) for such a migration. Never change it: SQLite databases
/// keep its checksum, and sqlx refuses a migration whose text changed.
const NOTHING_ON_SQLITE: &str = "-- postgres only: nothing to do on SQLite\nSELECT 1;\n";

/// Embed a service's migrations, named in the order they apply:
/// `ticketing_store::migrations!["0001_users.sql", "0002_sessions.sql"]`, read from the
/// crate's `migrations/` folder at compile time. A debug build refuses to open a store
/// while that folder holds a file the list does not name (it would never run).
#[macro_export]
macro_rules! migrations {
    ($($file:literal),* $(,)?) => {
        $crate::Migrations::new(
            concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"),
            &[$((
                $file,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
            )),*],
        )
    };
}

/// A service's migrations: (file name, SQL) in the order they apply.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// The folder they were read from, when built (checked by debug builds).
    dir: &'static str,
    files: &'static [(&'static str, &'static str)],
}

impl Migrations {
    /// See [`migrations!`].
    pub const fn new(
        dir: &'static str,
        files: &'static [(&'static str, &'static str)],
    ) -> Migrations {
        Migrations { dir, files }
    }

    /// No migrations: a store whose owner keeps its schema itself.
    pub const NONE: Migrations = Migrations {
        dir: "",
        files: &[],
    };

    /// The first `count` of them (a test of a migration opens a database as it was
    /// before).
    pub fn first(&self, count: usize) -> Migrations {
        Migrations {
            dir: "",
            files: &self.files[..count.min(self.files.len())],
        }
    }

    /// The `.sql` files of the folder they were read from that the list does not name.
    fn unlisted(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir) else {
            return Vec::new();
        };
        let mut unlisted: Vec<String> = entries
            .filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
            .filter(|name| name.ends_with(".sql"))
            .filter(|name| !self.files.iter().any(|(file, _)| file == name))
            .collect();
        unlisted.sort();
        unlisted
    }

    /// sqlx's migrator for these files on `backend` (the version and description read
    /// from each name, `<version>_<description>.sql`, as sqlx's own loader reads them).
    pub(crate) fn migrator(&self, backend: Backend) -> anyhow::Result<Migrator> {
        if cfg!(debug_assertions) && !self.dir.is_empty() {
            let unlisted = self.unlisted();
            anyhow::ensure!(
                unlisted.is_empty(),
                "{}: {unlisted:?} not listed in the crate's `migrations!`",
                self.dir
            );
        }
        let mut migrations = Vec::with_capacity(self.files.len());
        for (file, sql) in self.files {
            let (version, description) = file
                .strip_suffix(".sql")
                .and_then(|stem| stem.split_once('_'))
                .ok_or_else(|| {
                    anyhow::anyhow!("migration {file:?} is not <version>_<description>.sql")
                })?;
            let version: i64 = version
                .parse()
                .map_err(|_| anyhow::anyhow!("migration {file:?} has no integer version"))?;
            let sql = match backend {
                Backend::Sqlite if sql.starts_with(POSTGRES_ONLY) => NOTHING_ON_SQLITE,
                _ => *sql,
            };
            migrations.push(Migration::new(
                version,
                Cow::Owned(description.replace('_', " ")),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                sql.starts_with("-- no-transaction"),
            ));
        }
        migrations.sort_by_key(|m| m.version);
        Ok(Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded exactly as sqlx's own loader records the same files: databases migrated
    /// before keep their history (same versions, descriptions and checksums).
    #[tokio::test]
    async fn records_migrations_as_sqlx_does() {
        let dir = tempfile::tempdir().unwrap();
        let files: &'static [(&'static str, &'static str)] = &[
            ("0001_first_table.sql", "CREATE TABLE a (id TEXT);\n"),
            (
                "0002_second.sql",
                "-- a comment\nALTER TABLE a ADD COLUMN b BIGINT;\n",
            ),
        ];
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).unwrap();
        }
        let ours = Migrations::new("", files)
            .migrator(Backend::Postgres)
            .unwrap();
        let theirs = Migrator::new(dir.path()).await.unwrap();
        let key = |m: &Migration| (m.version, m.description.to_string(), m.checksum.to_vec());
        assert_eq!(
            ours.iter().map(key).collect::<Vec<_>>(),
            theirs.iter().map(key).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_postgres_only_migration_runs_nothing_on_sqlite() {
        let files: &'static [(&'static str, &'static str)] = &[(
            "0001_drop_key.sql",
            "-- postgres only\nALTER TABLE a DROP CONSTRAINT a_b_fkey;\n",
        )];
        let sql = |backend| {
            let migrator = Migrations::new("", files).migrator(backend).unwrap();
            migrator.iter().next().unwrap().sql.to_string()
        };
        assert_eq!(sql(Backend::Postgres), files[0].1);
        assert_eq!(sql(Backend::Sqlite), NOTHING_ON_SQLITE);
    }

    #[test]
    fn a_file_left_out_of_the_list_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("0002_b.sql"), "SELECT 1;").unwrap();
        let dir_name: &'static str = Box::leak(dir.path().display().to_string().into_boxed_str());
        let listed = Migrations::new(dir_name, &[("0001_a.sql", "SELECT 1;")]);
        assert_eq!(listed.unlisted(), vec!["0002_b.sql".to_owned()]);
        assert!(listed.migrator(Backend::Sqlite).is_err());
    }
}
