//! Child processes of the system tier: the Debian binaries the tests run for real, started
//! with their output in a log file and killed by their own PID when the test ends.

use std::time::Duration;

/// Variables a child process must not inherit: every request it makes stays on 127.0.0.1.
pub const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// A binary from a Debian package, at /usr/bin or else on PATH; fails the test naming the
/// package that `scripts/test-all.sh` installs.
pub fn debian_binary(binary: &str, package: &str) -> std::path::PathBuf {
    let debian_path = std::path::Path::new("/usr/bin").join(binary);
    if debian_path.is_file() {
        return debian_path;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|folder| folder.join(binary))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{binary} not found at /usr/bin nor on PATH; run scripts/test-all.sh, which \
                 installs the Debian package {package}"
            )
        })
}

/// A child process whose output goes to a log file. Dropping it kills the process (by its
/// own PID) and, when the test is failing, prints the log.
pub struct ChildProcess {
    pub name: String,
    child: std::process::Child,
    log_path: std::path::PathBuf,
}

impl ChildProcess {
    /// Starts `command` with stdin closed, stdout and stderr to `log_path` and no proxy
    /// variables.
    pub fn spawn(
        name: &str,
        mut command: std::process::Command,
        log_path: std::path::PathBuf,
    ) -> ChildProcess {
        let log = std::fs::File::create(&log_path).expect("log file");
        command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log);
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name} ({command:?}): {error}"));
        ChildProcess {
            name: name.to_owned(),
            child,
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|error| format!("(no log: {error})"))
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the child process") {
            panic!("{} exited ({status}); its log:\n{}", self.name, self.log());
        }
    }

    /// Polls GET `url` until it answers 2xx; fails at once if the process exits.
    pub async fn wait_until_answers(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        deadline: Duration,
    ) {
        let started = tokio::time::Instant::now();
        loop {
            self.assert_running();
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return;
            }
            if started.elapsed() > deadline {
                panic!(
                    "{} did not answer {url} within {deadline:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}\n---- end of {} log ----",
                self.name,
                self.log_path.display(),
                self.log(),
                self.name
            );
        }
    }
}
