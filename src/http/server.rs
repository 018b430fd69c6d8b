//! The accept loop: our own instead of `axum::serve`, for what a relay on the worst night
//! needs and `axum::serve` does not offer. No client may lock Alertmanager or an operator
//! out, so:
//!
//! - **Connection caps.** At most `max_connections` open at once (file descriptors), and
//!   at most `max_connections_per_client` from one client (one IPv4 address, or one IPv6
//!   /64). A trusted proxy carries many clients and has no per-client cap. At the global
//!   cap a newcomer closes the oldest connection of the client that holds the most, when
//!   that client holds at least two more than the newcomer; only when no client does is
//!   the newcomer refused. So a client with few connections, such as Alertmanager, gets
//!   in even while a flood from many addresses fills the cap.
//! - **Deadlines on the whole connection.** Reading a request's head (and waiting for it:
//!   hyper's `header_read_timeout` starts when the connection is ready for a request, so
//!   it also closes a kept-alive connection idle too long); the body and the handler
//!   (`request_deadline` in `http/mod.rs`); writing the response ([`WriteDeadline`]: a
//!   client that stops reading is cut).
//! - Optional TLS with rustls, and a graceful drain.
//!
//! Each request also gets the client's address (`ConnectInfo`) for per-client limits.

use std::collections::{HashMap, VecDeque};
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// The limits the accept loop enforces.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub header_read_timeout: Duration,
    /// Longest time writing one response (until it is flushed to the socket) may take.
    pub write_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Peers with no per-client cap: reverse proxies carry many clients.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets open requests finish (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<TlsAcceptor>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let connections = Arc::new(OpenConnections::new(&limits));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let slot = match connections.admit(remote.ip()) {
            Admission::Admitted { slot, evicted } => {
                if evicted {
                    metrics
                        .connections_cut
                        .with_label_values(&[CUT_EVICTED])
                        .inc();
                }
                slot
            }
            Admission::RefusedFull => {
                metrics.connections_refused.inc();
                drop(stream);
                continue;
            }
            Admission::RefusedPerClient => {
                metrics.client_connections_refused.inc();
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let metrics = metrics.clone();
        metrics.connections_open.inc();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            let evicted = slot.evicted.clone();
            let _slot = slot;
            let connection = async {
                // The write deadline sits above TLS: it sees hyper's responses only, not
                // what rustls writes on its own while reading.
                let served = match tls {
                    None => {
                        let stream = WriteDeadline::new(stream, write_timeout);
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls_stream)) => {
                                let stream = WriteDeadline::new(tls_stream, write_timeout);
                                watcher
                                    .watch(builder.serve_connection(TokioIo::new(stream), service))
                                    .await
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %remote, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                };
                if let Err(error) = served {
                    count_cut(&metrics, &error);
                    tracing::debug!(%error, "connection ended with an error");
                }
            };
            tokio::select! {
                () = connection => {}
                // Dropping the connection closes its socket.
                () = evicted.cancelled() => {}
            }
            metrics.connections_open.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How many connections the kernel may hold for the accept loop: more than the usual
/// 1,024, so that a burst of connections (a flood, or many browsers at once) does not fill
/// the queue and drop Alertmanager's while the loop catches up. The kernel caps it at
/// `net.core.somaxconn` (4,096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with [`LISTEN_BACKLOG`].
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted relay can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the process's soft limit on open files to `wanted`, or to its hard limit if
/// that is lower, and returns the soft limit now in force. Every open connection is a
/// file descriptor; a soft limit of 1,024 (the default of many systems and container
/// runtimes) would run out below `server.max_connections`.
pub fn raise_open_files_limit(wanted: u64) -> std::io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // None means unlimited.
    let Some(current) = limit.current else {
        return Ok(u64::MAX);
    };
    let target = limit.maximum.map_or(wanted, |maximum| wanted.min(maximum));
    if current >= target {
        return Ok(current);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    )?;
    Ok(target)
}

/// The address to print for people: where the server listens.
pub fn describe(address: SocketAddr, tls: bool) -> String {
    format!("{}://{address}", if tls { "https" } else { "http" })
}

/// `reason` values of `samsa_relay_connections_cut_total`.
pub const CUT_HEADER_TIMEOUT: &str = "header_timeout";
pub const CUT_WRITE_TIMEOUT: &str = "write_timeout";
pub const CUT_EVICTED: &str = "evicted";

/// Counts a connection that a deadline ended.
fn count_cut(metrics: &Metrics, error: &hyper::Error) {
    let reason = if error.is_timeout() {
        CUT_HEADER_TIMEOUT
    } else if is_write_deadline(error) {
        CUT_WRITE_TIMEOUT
    } else {
        return;
    };
    metrics.connections_cut.with_label_values(&[reason]).inc();
}

fn is_write_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io_error) = error.downcast_ref::<io::Error>()
            && io_error.kind() == io::ErrorKind::TimedOut
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// What a client is counted as: its IPv4 address, or its IPv6 /64 (the smallest network
/// one subscriber usually gets, so a client cannot pick a fresh address per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(address: IpAddr) -> ClientKey {
        match address.to_canonical() {
            IpAddr::V4(address) => ClientKey(IpAddr::V4(address)),
            IpAddr::V6(address) => {
                let network = u128::from(address) & !((1_u128 << 64) - 1);
                ClientKey(IpAddr::V6(network.into()))
            }
        }
    }
}

/// The open connections, by client: counts for the caps, and a way to close one.
struct OpenConnections {
    max_connections: usize,
    max_per_client: usize,
    trusted_proxies: Vec<ipnet::IpNet>,
    state: Mutex<OpenState>,
}

#[derive(Default)]
struct OpenState {
    /// Connections counted against `max_connections` (an evicted one until its task ends).
    open: usize,
    next_id: u64,
    /// Each client's connections, oldest first; an evicted one is removed at once.
    by_client: HashMap<ClientKey, VecDeque<(u64, CancellationToken)>>,
}

enum Admission {
    Admitted { slot: ConnectionSlot, evicted: bool },
    RefusedFull,
    RefusedPerClient,
}

/// One admitted connection; dropping it frees its place.
struct ConnectionSlot {
    connections: Arc<OpenConnections>,
    client: ClientKey,
    id: u64,
    /// Cancelled when a newcomer takes this connection's place.
    evicted: CancellationToken,
}

impl OpenConnections {
    fn new(limits: &ServerLimits) -> OpenConnections {
        OpenConnections {
            max_connections: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            trusted_proxies: limits.trusted_proxies.clone(),
            state: Mutex::default(),
        }
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let client = ClientKey::of(peer);
        let canonical = peer.to_canonical();
        let is_proxy = self
            .trusted_proxies
            .iter()
            .any(|network| network.contains(&canonical));
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = state.by_client.get(&client).map_or(0, VecDeque::len);
        if !is_proxy && held >= self.max_per_client {
            return Admission::RefusedPerClient;
        }
        let mut evicted = false;
        if state.open >= self.max_connections {
            // Scanning every client is fine: it happens only at the cap, under a flood.
            let largest = state
                .by_client
                .iter_mut()
                .max_by_key(|(_, connections)| connections.len());
            match largest {
                Some((_, connections)) if connections.len() >= held + 2 => {
                    if let Some((_, token)) = connections.pop_front() {
                        token.cancel();
                        evicted = true;
                    }
                }
                _ => return Admission::RefusedFull,
            }
            state
                .by_client
                .retain(|_, connections| !connections.is_empty());
        }
        state.open += 1;
        let id = state.next_id;
        state.next_id += 1;
        let token = CancellationToken::new();
        state
            .by_client
            .entry(client)
            .or_default()
            .push_back((id, token.clone()));
        Admission::Admitted {
            slot: ConnectionSlot {
                connections: self.clone(),
                client,
                id,
                evicted: token,
            },
            evicted,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut state = self
            .connections
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.open -= 1;
        if let Some(connections) = state.by_client.get_mut(&self.client) {
            connections.retain(|(id, _)| *id != self.id);
            if connections.is_empty() {
                state.by_client.remove(&self.client);
            }
        }
    }
}

/// A socket whose every response must be written within a deadline: the clock starts at
/// the first write after the last completed flush and stops when a flush completes (hyper
/// flushes after each response, or after a run of pipelined ones). Past the deadline
/// every write fails with `TimedOut` and hyper closes the connection, so a client that
/// stops reading its responses, or reads them a byte at a time, holds its socket no
/// longer than `write_timeout`. Reads pass through untouched: hyper's head timeout and
/// the request deadline bound them.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Running while a response is being written.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            deadline: None,
        }
    }

    /// Starts the clock if no response is being written; fails once it has run out.
    fn start_or_check(&mut self, context: &mut Context<'_>) -> io::Result<()> {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        self.check(context)
    }

    /// Fails once the clock has run out; nothing to do while no response is being
    /// written (hyper flushes on every turn, most of them with nothing to write).
    fn check(&mut self, context: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        // Polling also registers the task to be woken when the time is up, so a write
        // that waits for the client forever still ends.
        match deadline.as_mut().poll(context) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.start_or_check(context)?;
        Pin::new(&mut self.inner).poll_write(context, buffer)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.start_or_check(context)?;
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(context)?;
        let flushed = Pin::new(&mut self.inner).poll_flush(context);
        if let Poll::Ready(Ok(())) = flushed {
            self.deadline = None;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(context)?;
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(max_connections: usize, max_per_client: usize) -> Arc<OpenConnections> {
        Arc::new(OpenConnections::new(&ServerLimits {
            max_connections,
            max_connections_per_client: max_per_client,
            header_read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            tls_handshake_timeout: Duration::from_secs(1),
            trusted_proxies: vec!["10.0.0.1/32".parse().unwrap()],
        }))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn admitted(admission: Admission) -> (ConnectionSlot, bool) {
        match admission {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::RefusedFull => panic!("refused: full"),
            Admission::RefusedPerClient => panic!("refused: per client"),
        }
    }

    #[test]
    fn one_client_gets_its_share_and_frees_it_on_close() {
        let connections = connections(100, 2);
        let first = admitted(connections.admit(ip("192.0.2.1"))).0;
        let _second = admitted(connections.admit(ip("::ffff:192.0.2.1"))).0;
        assert!(matches!(
            connections.admit(ip("192.0.2.1")),
            Admission::RefusedPerClient
        ));
        // Another client is not affected; a proxy has no per-client cap.
        let _other = admitted(connections.admit(ip("192.0.2.2"))).0;
        let _proxied: Vec<_> = (0..5)
            .map(|_| admitted(connections.admit(ip("10.0.0.1"))).0)
            .collect();
        drop(first);
        let _again = admitted(connections.admit(ip("192.0.2.1"))).0;
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_network() {
        let connections = connections(100, 1);
        let _first = admitted(connections.admit(ip("2001:db8:1:2::1"))).0;
        assert!(matches!(
            connections.admit(ip("2001:db8:1:2:ffff::9")),
            Admission::RefusedPerClient
        ));
        let _elsewhere = admitted(connections.admit(ip("2001:db8:1:3::1"))).0;
    }

    #[test]
    fn at_the_cap_a_newcomer_closes_the_oldest_connection_of_the_largest_client() {
        let connections = connections(4, 10);
        let flood: Vec<_> = (0..3)
            .map(|_| admitted(connections.admit(ip("192.0.2.1"))).0)
            .collect();
        let _small = admitted(connections.admit(ip("192.0.2.2"))).0;
        // Full: Alertmanager (no connection yet) takes the flood's oldest place.
        let (_alertmanager, evicted) = admitted(connections.admit(ip("198.51.100.5")));
        assert!(evicted);
        assert!(flood[0].evicted.is_cancelled());
        assert!(!flood[1].evicted.is_cancelled());
        // The evicted one still counts until its task ends, so the next newcomer takes
        // another (the flood holds two, the newcomer none).
        let (_next, evicted) = admitted(connections.admit(ip("198.51.100.6")));
        assert!(evicted);
        assert!(flood[1].evicted.is_cancelled());
        // Now every client holds one: a newcomer that already holds one is refused.
        assert!(matches!(
            connections.admit(ip("192.0.2.2")),
            Admission::RefusedFull
        ));
        drop(flood);
        let _fits = admitted(connections.admit(ip("192.0.2.2"))).0;
    }
}
