//! The relay's own pool of SMTP connections, over lettre's `AsyncSmtpConnection`.
//!
//! **Why not lettre's pool.** lettre 0.11 opens its sockets itself and never sets
//! `TCP_NODELAY`. It writes a message's body and its closing `.` separately, so Nagle's
//! algorithm holds the `.` until the server acknowledges the body, and the server delays
//! that acknowledgement by about 40 ms: every message cost 40 ms per connection
//! (docs/performance.md, "Measured"). lettre's pool also puts a connection whose send was cut short
//! (the worker's timeout) back into the pool, where every later reply is off by one. Here
//! the relay opens the socket with `TCP_NODELAY` and hands it to lettre
//! (`AsyncSmtpConnection::connect_with_transport`), and a connection lives inside the send
//! that uses it: a send that is dropped drops its connection, which is never reused.
//!
//! **Security.** `smtp://` with STARTTLS (when offered, or required) upgrades through
//! lettre's `starttls` with its `TlsParameters`; `smtps://` speaks TLS from the first byte
//! through tokio-rustls. Both trust the public roots (webpki-roots, as lettre does) and
//! `smtp.ca_file`.
//!
//! **Reuse.** At most `pool_max_connections` connections are open at once (in use or
//! idle). An idle connection is reused after a `NOOP` shows it still answers, and is
//! closed once it has been idle for [`MAX_IDLE`]. A connection that saw any error is
//! closed, never reused.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long an idle connection is kept (as lettre's pool does by default).
pub const MAX_IDLE: Duration = Duration::from_secs(60);

/// How a connection is secured.
pub enum Security {
    /// Plain SMTP, for a server on the same host (`starttls = "none"`).
    Plain,
    /// STARTTLS: when the server offers it, or (`required`) refuse to go on without it.
    StartTls {
        parameters: TlsParameters,
        required: bool,
    },
    /// `smtps://`: TLS from the first byte.
    Implicit {
        connector: tokio_rustls::TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
    },
}

impl Security {
    /// Implicit TLS to `host`, trusting the public roots and `extra_roots_pem`.
    pub fn implicit(host: &str, extra_roots_pem: Option<&[u8]>) -> anyhow::Result<Security> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, ServerName};

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots_pem {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                roots.add(certificate?)?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Security::Implicit {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: ServerName::try_from(host.to_owned())?,
        })
    }
}

/// Why a send failed: lettre's SMTP error, or the connection could not be opened.
#[derive(Debug)]
pub enum SendError {
    Smtp(lettre::transport::smtp::Error),
    Connect(String),
}

/// One SMTP server and the connections kept open to it.
pub struct SmtpPool {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    /// Bounds connecting (TCP, TLS and the greeting); the caller bounds the whole send.
    connect_timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection that may be open.
    slots: tokio::sync::Semaphore,
}

struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

impl SmtpPool {
    pub fn new(
        host: String,
        port: u16,
        security: Security,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
        max_connections: u32,
    ) -> SmtpPool {
        SmtpPool {
            host,
            port,
            security,
            credentials,
            connect_timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(max_connections.max(1) as usize),
        }
    }

    /// `host:port`, for reasons and logs.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Sends one message on an idle connection that still answers, or a new one. The
    /// connection goes back to the pool only after a send that fully succeeded.
    pub async fn send(
        &self,
        message: &Message,
    ) -> Result<lettre::transport::smtp::response::Response, SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::Connect("the SMTP pool is closed".to_owned()))?;
        let mut connection = match self.take_idle().await {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let result = connection
            .send(message.envelope(), &message.formatted())
            .await;
        if result.is_ok() && !connection.has_broken() {
            self.put_idle(connection);
        }
        result.map_err(SendError::Smtp)
    }

    /// The most recently used idle connection that still answers a `NOOP`; older or
    /// silent ones are closed.
    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self.idle.lock().expect("smtp pool lock").pop()?;
            if idle.since.elapsed() > MAX_IDLE {
                continue;
            }
            let mut connection = idle.connection;
            if connection.test_connected().await {
                return Some(connection);
            }
        }
    }

    fn put_idle(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("smtp pool lock");
        idle.retain(|idle| idle.since.elapsed() <= MAX_IDLE);
        idle.push(Idle {
            connection,
            since: Instant::now(),
        });
    }

    /// Opens, secures and (with credentials) authenticates a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let opened = tokio::time::timeout(self.connect_timeout, async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|error| SendError::Connect(format!("cannot connect: {error}")))?;
            tcp.set_nodelay(true)
                .map_err(|error| SendError::Connect(format!("cannot set TCP_NODELAY: {error}")))?;
            let stream: Box<dyn AsyncTokioStream> = match &self.security {
                Security::Implicit { connector, name } => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|error| SendError::Connect(format!("TLS: {error}")))?;
                    Box::new(ImplicitTls(tls))
                }
                Security::Plain | Security::StartTls { .. } => Box::new(tcp),
            };
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(SendError::Smtp)
        })
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "no SMTP greeting from {} within {:?}",
                self.server(),
                self.connect_timeout
            ))
        })?;
        let mut connection = opened?;
        if let Security::StartTls {
            parameters,
            required,
        } = &self.security
            && (*required || connection.can_starttls())
        {
            connection
                .starttls(parameters.clone(), &self.hello)
                .await
                .map_err(SendError::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(SendError::Smtp)?;
        }
        Ok(connection)
    }
}

/// A TLS stream lettre can take as its transport (it asks a transport for its peer).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}
