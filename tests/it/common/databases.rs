//! Fresh databases of one backend for the storage contract (`tests/it/storage.rs`):
//! SQLite files in a temporary folder, or databases on a real PostgreSQL server that
//! lives as long as the [`Databases`] (system tier).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use samsa_relay::config::{DatabaseConfig, DatabaseUrl};
use samsa_relay::storage::Storage;

#[cfg(feature = "system-tests")]
use super::PostgresServer;

/// Where the databases of one test live.
pub struct Databases {
    backend: Backend,
    count: AtomicU32,
}

enum Backend {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "system-tests")]
    Postgres(PostgresServer),
}

impl Databases {
    /// SQLite files in a temporary folder of their own.
    pub fn sqlite() -> Databases {
        Databases {
            backend: Backend::Sqlite(tempfile::tempdir().expect("temporary folder")),
            count: AtomicU32::new(0),
        }
    }

    /// Databases on a PostgreSQL server of their own.
    #[cfg(feature = "system-tests")]
    pub async fn postgres() -> Databases {
        Databases {
            backend: Backend::Postgres(PostgresServer::start().await),
            count: AtomicU32::new(0),
        }
    }

    /// The PostgreSQL server, if that is the backend.
    #[cfg(feature = "system-tests")]
    pub fn server(&mut self) -> Option<&mut PostgresServer> {
        match &mut self.backend {
            Backend::Postgres(server) => Some(server),
            Backend::Sqlite(_) => None,
        }
    }

    /// The config of a new, empty database (created on the server for PostgreSQL; SQLite
    /// creates the file when it is opened).
    pub async fn fresh_config(&self) -> DatabaseConfig {
        let number = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let url = match &self.backend {
            Backend::Sqlite(folder) => DatabaseUrl::Sqlite {
                path: folder.path().join(format!("relay-{number}.db")),
            },
            #[cfg(feature = "system-tests")]
            Backend::Postgres(server) => {
                let url = server.create_database(&format!("relay_{number}")).await;
                DatabaseUrl::parse(&url).expect("a valid postgres URL")
            }
        };
        database_config(url)
    }

    /// A new, empty database, opened and migrated.
    pub async fn fresh(&self) -> Storage {
        self.fresh_with_config().await.0
    }

    /// A new database and the config that opens it again.
    pub async fn fresh_with_config(&self) -> (Storage, DatabaseConfig) {
        let config = self.fresh_config().await;
        let storage = Storage::open(&config)
            .await
            .unwrap_or_else(|error| panic!("open {}: {error:#}", config.url));
        (storage, config)
    }
}

/// The settings the tests open a database with.
pub fn database_config(url: DatabaseUrl) -> DatabaseConfig {
    DatabaseConfig {
        url,
        busy_timeout: Duration::from_secs(5),
        min_free_bytes: 0,
        max_connections: 16,
    }
}
