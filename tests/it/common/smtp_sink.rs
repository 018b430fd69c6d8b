//! The SMTP server of the email tests (`email` and `email_tls`), system tier:
//! `tests/support/smtp_sink.py` (aiosmtpd, the Debian package python3-aiosmtpd), started
//! as a child process on a free local port. It records each message it accepts, parsed by
//! Python's own email package, and how the session that carried it was protected; it can
//! refuse recipients (4xx a number of times, or 5xx always) or stall after the data.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SINK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
/// Debian's python3, where python3-aiosmtpd is installed (another python may come first
/// on PATH).
const PYTHON: &str = "/usr/bin/python3";

/// How the sink protects its sessions. The certificate file holds the server's
/// certificate (and chain), the key file its private key, both PEM.
#[derive(Debug, Clone)]
pub enum SinkTls {
    /// Plain text only.
    None,
    /// Offers STARTTLS and refuses mail until a session has switched to TLS.
    RequiredStartTls { certificate: PathBuf, key: PathBuf },
    /// TLS from the first byte (`smtps://`).
    Implicit { certificate: PathBuf, key: PathBuf },
}

/// `tests/support/smtp_sink.py` as a child process, killed (by its PID) when dropped; it
/// also exits by itself when its standard input closes.
pub struct SmtpSink {
    child: Child,
    address: String,
    scheme: &'static str,
    received: PathBuf,
    control: PathBuf,
    _folder: tempfile::TempDir,
}

impl SmtpSink {
    /// A plain-text server.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with_tls(&SinkTls::None)
    }

    pub fn start_with_tls(tls: &SinkTls) -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free local port")
            .port();
        SmtpSink::start_on(tls, port)
    }

    /// A server on `port`: a restart of one that was stopped, say.
    pub fn start_on(tls: &SinkTls, port: u16) -> SmtpSink {
        const READY_DEADLINE: Duration = Duration::from_secs(20);
        let folder = tempfile::tempdir().unwrap();
        let received = folder.path().join("received");
        let control = folder.path().join("control.json");
        let mut command = Command::new(PYTHON);
        command
            .arg(SINK_SCRIPT)
            .arg("--port")
            .arg(port.to_string())
            .arg("--folder")
            .arg(&received)
            .arg("--control")
            .arg(&control)
            .arg("--max-seconds")
            .arg("300");
        let scheme = match tls {
            SinkTls::None => "smtp",
            SinkTls::RequiredStartTls { certificate, key } => {
                command
                    .arg("--certificate")
                    .arg(certificate)
                    .arg("--key")
                    .arg(key)
                    .arg("--require-starttls");
                "smtp"
            }
            SinkTls::Implicit { certificate, key } => {
                command
                    .arg("--certificate")
                    .arg(certificate)
                    .arg("--key")
                    .arg(key)
                    .arg("--implicit-tls");
                "smtps"
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {PYTHON} {SINK_SCRIPT} ({error}); scripts/test-all.sh installs python3-aiosmtpd")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first_line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut first_line);
            let _ = lines.send(first_line);
        });
        let line = match ready.recv_timeout(READY_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the SMTP sink did not get ready within {READY_DEADLINE:?}");
            }
        };
        let Some(address) = line.trim().strip_prefix("READY ").map(str::to_owned) else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "the SMTP sink did not start (first line {line:?}, {status:?}): it needs the Debian \
                 package python3-aiosmtpd, which scripts/test-all.sh installs"
            );
        };
        SmtpSink {
            child,
            address,
            scheme,
            received,
            control,
            _folder: folder,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the sink's address ends in its port")
    }

    /// `smtp://127.0.0.1:PORT`, or `smtps://…` for implicit TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// Replaces the control file in one rename; the sink reads it on every RCPT and DATA.
    pub fn control(&self, control: Value) {
        let temporary = self.control.with_extension("tmp");
        std::fs::write(&temporary, control.to_string()).unwrap();
        std::fs::rename(&temporary, &self.control).unwrap();
    }

    /// Every accepted message, in the order received.
    pub fn messages(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(&self.received) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .collect();
        paths.sort();
        paths.iter().map(|path| Received(read_json(path))).collect()
    }

    /// Every refused recipient, in order.
    pub fn rejections(&self) -> Vec<Value> {
        self.json_lines("rejections.jsonl")
    }

    /// Every STARTTLS handshake a client broke off, in order: `{"at", "error"}`, the error
    /// as the server's TLS library saw it.
    pub fn tls_failures(&self) -> Vec<Value> {
        self.json_lines("tls_failures.jsonl")
    }

    fn json_lines(&self, name: &str) -> Vec<Value> {
        match std::fs::read_to_string(self.received.join(name)) {
            Ok(text) => text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the sink recorded it.
#[derive(Debug, Clone)]
pub struct Received(Value);

impl Received {
    pub fn rcpt_tos(&self) -> Vec<&str> {
        self.0["rcpt_tos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_str().unwrap())
            .collect()
    }

    pub fn mail_from(&self) -> &str {
        self.0["mail_from"].as_str().unwrap()
    }

    pub fn peer(&self) -> &str {
        self.0["peer"].as_str().unwrap()
    }

    pub fn stalled(&self) -> bool {
        self.0["stalled"].as_bool().unwrap()
    }

    pub fn received_at(&self) -> f64 {
        self.0["received_at"].as_f64().unwrap()
    }

    /// How the session that carried the message was protected: `None` for plain text,
    /// else (`"starttls"` or `"implicit"`, the TLS version such as `"TLSv1.3"`).
    pub fn tls(&self) -> Option<(&str, &str)> {
        let tls = &self.0["tls"];
        if tls.is_null() {
            return None;
        }
        Some((
            tls["mode"].as_str().unwrap(),
            tls["version"].as_str().unwrap(),
        ))
    }

    /// The header, decoded, when it occurs exactly once.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.0["headers"][name].as_array()?.as_slice() {
            [value] => value.as_str(),
            values => panic!("{name} occurs {} times", values.len()),
        }
    }

    pub fn content_type(&self) -> &str {
        self.0["content_type"].as_str().unwrap()
    }

    /// (content type, text with `\n` line ends and no trailing whitespace) of each part.
    pub fn parts(&self) -> Vec<(String, String)> {
        self.0["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|part| {
                (
                    part["content_type"].as_str().unwrap().to_owned(),
                    lines(part["text"].as_str().unwrap_or_default()),
                )
            })
            .collect()
    }

    pub fn defects(&self) -> Vec<Value> {
        self.0["defects"].as_array().cloned().unwrap_or_default()
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `text` with `\n` line ends and no trailing whitespace, as [`Received::parts`] gives it.
pub fn lines(text: &str) -> String {
    text.replace("\r\n", "\n").trim_end().to_owned()
}
