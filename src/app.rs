//! The app: storage, metrics and the HTTP server wired together. `main` and the tests
//! build the same [`App`]; the tests bind port 0 and stop it through the shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;
use crate::cluster::{CORRELATION, Lease, TIMERS, holder_id};
use crate::config::Config;
use crate::delivery::RetryPolicy;
use crate::delivery::{ChannelSender, DeliveryWorker, email::EmailTransport};
use crate::gauges::GaugeRefresher;
use crate::http::server::{ServerLimits, serve};
use crate::http::{AppState, metrics_router, router};
use crate::incident_worker::{IncidentWorker, WatchdogClock};
use crate::ingest::{Ingest, IngestQueue};
use crate::links::LinkSigner;
use crate::maintenance_scheduler::MaintenanceScheduler;
use crate::metrics::Metrics;
use crate::notice::NoticeRenderer;
use crate::operators::{OperatorMailWorker, ReviewNotifier};
use crate::publishing::Publisher;
use crate::silences::SilenceClient;
use crate::storage::Storage;
use crate::tls::tls_acceptor;

pub struct App {
    state: AppState,
    gauges: GaugeRefresher,
    review_wake: Arc<tokio::sync::Notify>,
    notifier: ReviewNotifier,
    operator_mail: OperatorMailWorker,
    worker: IncidentWorker,
    maintenance: MaintenanceScheduler,
    delivery_workers: Vec<Arc<DeliveryWorker>>,
    /// The correlation and timers leases this replica renews while it runs.
    leases: Vec<Lease>,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    /// `server.metrics_listen`, bound.
    metrics_listener: Option<(tokio::net::TcpListener, SocketAddr)>,
}

impl App {
    /// Opens storage (migrating it) and binds the listener. Nothing is served until
    /// [`App::run`].
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let renderer = Arc::new(
            NoticeRenderer::new(&config.notices).context("cannot load the notice templates")?,
        );
        let storage = Storage::open(&config.database)
            .await
            .context("cannot open storage")?;
        let metrics = Metrics::new();
        let listener = crate::http::server::bind(config.server.listen)
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let local_addr = listener.local_addr().context("listener address")?;
        let metrics_listener = match config.server.metrics_listen {
            Some(address) => {
                let listener = crate::http::server::bind(address)
                    .with_context(|| format!("cannot listen for /metrics on {address}"))?;
                let local_addr = listener.local_addr().context("metrics listener address")?;
                Some((listener, local_addr))
            }
            None => None,
        };
        // Over a shared database another replica may be sending what is leased now; its
        // leases run out by themselves if it died.
        if !storage.is_shared() {
            let released = storage
                .release_delivery_leases()
                .await
                .context("cannot release delivery leases")?;
            if released > 0 {
                tracing::info!(
                    released,
                    "deliveries left in flight by an earlier run are due again"
                );
            }
            // And its roles are free at once, not after their leases run out.
            storage
                .clear_leases()
                .await
                .context("cannot clear the leases of an earlier run")?;
        }
        let config = Arc::new(config);
        let delivery_wake = Arc::new(tokio::sync::Notify::new());
        let email_transport = EmailTransport::new(&config).context("cannot set up email")?;
        let mut delivery_workers = Vec::new();
        for channel in config.channels.values() {
            let sender = ChannelSender::for_channel(&config, channel, &email_transport, &storage)
                .with_context(|| format!("cannot set up channel {}", channel.name))?;
            delivery_workers.push(Arc::new(DeliveryWorker::new(
                storage.clone(),
                config.clone(),
                metrics.clone(),
                channel.clone(),
                sender,
                delivery_wake.clone(),
            )));
        }
        let incident_wake = Arc::new(tokio::sync::Notify::new());
        let review_wake = Arc::new(tokio::sync::Notify::new());
        let mail_wake = Arc::new(tokio::sync::Notify::new());
        let holder = holder_id(&config.cluster.replica_name);
        tracing::info!(replica = %holder, "replica started");
        metrics.replica_info.with_label_values(&[&holder]).set(1);
        let correlation_lease = Lease::new(
            CORRELATION,
            &holder,
            config.cluster.lease_ttl,
            incident_wake.clone(),
        );
        let timers_lease = Lease::new(
            TIMERS,
            &holder,
            config.cluster.lease_ttl,
            review_wake.clone(),
        );
        let signer = LinkSigner::new(&config.links.secret);
        let notifier = ReviewNotifier {
            storage: storage.clone(),
            config: config.clone(),
            signer: signer.clone(),
            metrics: metrics.clone(),
            mail_wake: mail_wake.clone(),
            lease: timers_lease.clone(),
        };
        let operator_mail = OperatorMailWorker {
            storage: storage.clone(),
            config: config.clone(),
            transport: email_transport.clone(),
            policy: RetryPolicy::default(),
            wake: mail_wake.clone(),
        };
        let watchdog = Arc::new(WatchdogClock::new(jiff::Timestamp::now()));
        // The backlog left by an earlier run (or other replicas) counts from the start.
        let backlog = Backlog::new(config.webhook.max_backlog, metrics.ingest_backlog.clone());
        let (highest_receipt_id, processed_up_to) = storage
            .backlog_bounds()
            .await
            .context("cannot read the backlog of webhooks")?;
        backlog.note_stored(highest_receipt_id);
        backlog.note_processed(processed_up_to);
        if !backlog.is_empty() {
            tracing::info!(
                backlog = backlog.len(),
                limit = backlog.limit(),
                "webhooks stored earlier wait for the incident worker"
            );
        }
        let worker = IncidentWorker {
            storage: storage.clone(),
            config: config.clone(),
            renderer: renderer.clone(),
            metrics: metrics.clone(),
            wake: incident_wake.clone(),
            watchdog: watchdog.clone(),
            review_wake: review_wake.clone(),
            lease: correlation_lease.clone(),
            kept_engine: Default::default(),
            batch_budget: Default::default(),
            backlog: backlog.clone(),
        };
        let ingest = Ingest::new(
            IngestQueue::start(
                storage.clone(),
                metrics.clone(),
                config.server.max_connections,
            ),
            metrics.clone(),
            watchdog.clone(),
            &config.incidents.watchdog_alertname,
            incident_wake.clone(),
            backlog,
        );
        let publisher = Publisher::new(
            storage.clone(),
            config.clone(),
            metrics.clone(),
            delivery_wake.clone(),
        );
        let silences = match config.maintenance.alertmanager_urls.as_slice() {
            [] => None,
            urls => Some(
                SilenceClient::new(
                    urls.iter()
                        .map(|url| url.parse())
                        .collect::<Result<Vec<_>, _>>()
                        .context("maintenance.alertmanager_urls")?,
                    config.maintenance.alertmanager_timeout,
                    config.maintenance.alertmanager_token.clone(),
                )
                .context("cannot set up the Alertmanager silences client")?,
            ),
        };
        let maintenance = MaintenanceScheduler {
            storage: storage.clone(),
            config: config.clone(),
            renderer: renderer.clone(),
            publisher: publisher.clone(),
            silences,
            metrics: metrics.clone(),
            incident_wake: incident_wake.clone(),
            review_wake: review_wake.clone(),
            lease: timers_lease.clone(),
        };
        let state = AppState {
            ingest,
            publisher,
            config,
            storage,
            metrics,
            incident_wake,
            delivery_wake,
            watchdog,
            renderer,
            signer,
            mail_wake,
            workers_running: Default::default(),
            workers_expected: Default::default(),
        };
        let gauges = GaugeRefresher {
            storage: state.storage.clone(),
            config: state.config.clone(),
            metrics: state.metrics.clone(),
            watchdog: state.watchdog.clone(),
        };
        Ok(App {
            state,
            gauges,
            review_wake,
            notifier,
            operator_mail,
            worker,
            maintenance,
            delivery_workers,
            leases: vec![correlation_lease, timers_lease],
            listener,
            local_addr,
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, address)| *address)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The incident worker, whose single step tests may drive directly.
    pub fn worker(&self) -> &IncidentWorker {
        &self.worker
    }

    /// The maintenance scheduler, whose single step tests may drive with their clock.
    pub fn maintenance(&self) -> &MaintenanceScheduler {
        &self.maintenance
    }

    /// The delivery workers, one per channel.
    pub fn delivery_workers(&self) -> &[Arc<DeliveryWorker>] {
        &self.delivery_workers
    }

    /// Serves and runs the workers until `shutdown` completes, then lets in-flight requests
    /// and the workers' current steps finish within the configured grace period, and closes
    /// storage.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            state,
            listener,
            metrics_listener,
            worker,
            maintenance,
            delivery_workers,
            notifier,
            operator_mail,
            review_wake,
            gauges,
            leases,
            ..
        } = self;
        let grace = state.config.server.shutdown_grace;
        let stopping = CancellationToken::new();
        let workers = tokio_util::task::TaskTracker::new();
        let spawn = |task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
            state.workers_expected.fetch_add(1, Ordering::Relaxed);
            state.workers_running.fetch_add(1, Ordering::Relaxed);
            let running = state.workers_running.clone();
            workers.spawn(async move {
                // Counts down on return and on a panic alike.
                let _alive = AliveGuard(running);
                task.await;
            });
        };
        for lease in leases {
            spawn(Box::pin(lease.run(
                state.storage.clone(),
                state.metrics.clone(),
                stopping.clone(),
            )));
        }
        // The incident worker on a thread and runtime of its own: between the statements of
        // a batch, while it holds the write connection, it waits for no request's task.
        let worker_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the incident worker's runtime")?;
        let (worker_done, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker_stopping = stopping.clone();
        std::thread::Builder::new()
            .name("incident-worker".to_owned())
            .spawn(move || {
                worker_runtime.block_on(worker.run(worker_stopping));
                let _ = worker_done.send(());
            })
            .context("cannot start the incident worker's thread")?;
        spawn(Box::pin(async move {
            let _ = worker_stopped.await;
        }));
        spawn(Box::pin(notifier.run(review_wake, stopping.clone())));
        spawn(Box::pin(maintenance.run(stopping.clone())));
        spawn(Box::pin(operator_mail.run(stopping.clone())));
        spawn(Box::pin(gauges.run(stopping.clone())));
        spawn(Box::pin(
            state.storage.clone().run_checkpointer(stopping.clone()),
        ));
        let upkeep = crate::subscribers::SubscriptionUpkeep {
            storage: state.storage.clone(),
            config: state.config.clone(),
        };
        spawn(Box::pin(upkeep.run(stopping.clone())));
        for delivery_worker in delivery_workers {
            let stopping = stopping.clone();
            spawn(Box::pin(async move {
                delivery_worker.run_shared(stopping).await
            }));
        }
        workers.close();
        let limits = ServerLimits {
            max_connections: state.config.server.max_connections,
            max_connections_per_client: state.config.server.max_connections_per_client,
            header_read_timeout: state.config.server.header_read_timeout,
            write_timeout: state.config.server.write_timeout,
            tls_handshake_timeout: std::time::Duration::from_secs(10),
            trusted_proxies: state.config.server.trusted_proxies.clone(),
        };
        // The metrics listener has the same limits, no TLS, and stops with the main one.
        if let Some((metrics_listener, _)) = metrics_listener {
            let server = serve(
                metrics_listener,
                metrics_router(state.clone()),
                limits.clone(),
                None,
                state.metrics.clone(),
                stopping.clone(),
            );
            workers.spawn(async move {
                if let Err(error) = server.await {
                    tracing::error!(error = format!("{error:#}"), "the metrics listener failed");
                }
            });
        }
        let tls = match &state.config.server.tls {
            Some((certificate, key)) => {
                Some(tls_acceptor(certificate, key).context("cannot set up TLS")?)
            }
            None => None,
        };
        let server = serve(
            listener,
            router(state.clone()),
            limits,
            tls,
            state.metrics.clone(),
            stopping.clone(),
        );
        let mut server = tokio::spawn(server);
        tokio::select! {
            result = &mut server => {
                stopping.cancel();
                let _ = tokio::time::timeout(grace, workers.wait()).await;
                state.storage.close().await;
                result.context("server task")?.context("server failed")?;
                return Ok(());
            }
            () = shutdown => {}
        }
        tracing::info!(grace_seconds = grace.as_secs_f64(), "shutting down");
        stopping.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(result) => result.context("server task")?.context("server failed")?,
            Err(_) => {
                tracing::warn!("grace period over; dropping the connections still open");
                server.abort();
            }
        }
        if tokio::time::timeout_at(deadline, workers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over; a worker step was cut short (its transaction rolls back)"
            );
        }
        state.storage.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Counts a background loop as running until it ends.
struct AliveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
