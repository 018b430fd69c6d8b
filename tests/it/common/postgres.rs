//! A real PostgreSQL server (Debian's `postgresql` package) for the system tier: its own
//! data folder in a temporary folder, listening on 127.0.0.1 at a free port and on a
//! socket in that folder, run as the unprivileged `postgres` user when the tests run as
//! root (PostgreSQL refuses to run as root). Stopped by its PID when dropped.
//!
//! `initdb` runs once per test run and user: its data folder is kept as a template under
//! Cargo's target folder (`CARGO_TARGET_TMPDIR`) and copied for every server, which takes
//! a fraction of the time. Each test starts its own server and makes databases on it with
//! [`PostgresServer::create_database`]. [`PostgresServer::stop`] and
//! [`PostgresServer::start_again`] stop the server and start it again on the same data
//! and port, for the tests of an unreachable database.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::Connection as _;

/// The superuser the harness connects as (`initdb --username`), with `trust` auth on the
/// server's own loopback and socket.
pub const POSTGRES_USER: &str = "postgres";

/// How long the server may take to start or stop.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A running (or stopped) PostgreSQL server of one test.
pub struct PostgresServer {
    folder: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// (uid, gid) the server runs as: `postgres` when the tests run as root.
    owner: Option<(u32, u32)>,
    process: Option<Child>,
}

impl PostgresServer {
    /// A fresh server with no database but `postgres`, accepting connections.
    pub async fn start() -> PostgresServer {
        let bin = postgres_bin();
        let owner = server_owner();
        let template = template_data_folder(&bin, owner);
        let folder = tempfile::tempdir().expect("temporary folder");
        if let Some((uid, gid)) = owner {
            chown(folder.path(), uid, gid);
        }
        let data = folder.path().join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&data)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -a {} failed", template.display());
        let socket = folder.path().join("socket");
        std::fs::create_dir(&socket).expect("socket folder");
        if let Some((uid, gid)) = owner {
            chown(&socket, uid, gid);
        }
        let mut server = PostgresServer {
            folder,
            bin,
            port: super::free_port(),
            owner,
            process: None,
        };
        server.start_again().await;
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server, over TCP on 127.0.0.1.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{POSTGRES_USER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Creates an empty database; returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut connection = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|error| panic!("connect to the test server: {error}"));
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        let _ = connection.close().await;
        self.url(name)
    }

    /// Starts the server on its data folder and port (again, after [`Self::stop`]) and
    /// waits until it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(self.process.is_none(), "the test server is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.folder.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.folder.path().join("socket"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .env("LC_ALL", "C");
        for variable in super::PROXY_VARIABLES {
            command.env_remove(variable);
        }
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start postgres: {error}"));
        self.process = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .process
                .as_mut()
                .expect("started")
                .try_wait()
                .expect("poll postgres")
            {
                panic!("postgres exited ({status}); its log:\n{}", self.log());
            }
            if let Ok(connection) = sqlx::PgConnection::connect(&self.url("postgres")).await {
                let _ = connection.close().await;
                return;
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "postgres did not accept connections within {STARTUP_DEADLINE:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (fast shutdown: SIGINT to its PID, which ends every session and
    /// checkpoints) and waits for it to exit; SIGKILL if it does not in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.process.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let started = Instant::now();
        while started.elapsed() < STARTUP_DEADLINE {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join("postgres.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_else(|error| format!("(no log: {error})"))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- postgres log ----\n{}\n---- end of postgres log ----",
                self.log()
            );
        }
    }
}

/// The newest server's binaries, /usr/lib/postgresql/<version>/bin.
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server under /usr/lib/postgresql/<version>/bin; run \
             scripts/test-all.sh, which installs the Debian package postgresql"
        )
    })
}

/// `postgres`'s (uid, gid) when the tests run as root; `None` (run as ourselves) otherwise.
fn server_owner() -> Option<(u32, u32)> {
    if !rustix::process::getuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let entry = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root and there is no postgres user to run PostgreSQL as; \
                 install the Debian package postgresql, which creates it"
            )
        });
    let fields: Vec<&str> = entry.split(':').collect();
    Some((
        fields[2].parse().expect("postgres uid"),
        fields[3].parse().expect("postgres gid"),
    ))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|error| panic!("chown {}: {error}", path.display()));
}

/// A data folder made by `initdb`, once per server version and owner, copied for every
/// server.
fn template_data_folder(bin: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    static MADE: Mutex<()> = Mutex::new(());
    let _guard = MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let version = bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or("unknown");
    let uid = owner.map_or_else(|| rustix::process::getuid().as_raw(), |(uid, _)| uid);
    let template =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("postgres-{version}-data-uid{uid}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    // initdb runs in a folder of ours (the owner must be able to write its parent); the
    // result moves into place in one rename, so a concurrent test process either sees
    // the whole template or none.
    let scratch = tempfile::tempdir().expect("temporary folder");
    if let Some((uid, gid)) = owner {
        chown(scratch.path(), uid, gid);
    }
    let data = scratch.path().join("data");
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(&data)
        .args([
            "--auth=trust",
            "--username",
            POSTGRES_USER,
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run initdb: {error}"));
    assert!(
        output.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp folder");
    let staged = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "postgres-{version}-data-uid{uid}.{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staged);
    let status = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&staged)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {} failed", data.display());
    if std::fs::rename(&staged, &template).is_err() {
        // Another test process put its template there first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(
        template.join("PG_VERSION").is_file(),
        "no template at {}",
        template.display()
    );
    template
}
