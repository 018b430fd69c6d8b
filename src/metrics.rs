//! Prometheus metrics. One [`Metrics`] per app (no process-wide registry), so that tests
//! that run several apps in one process each see their own figures. Names start with
//! `samsa_relay_`, counters end in `_total`, durations are `_seconds` histograms, and labels
//! are low-cardinality (outcome, status, operation, route pattern).

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The relay's metrics: a cheap handle (one `Arc`) on [`MetricsInner`], since every
/// request clones the app's state and with it this.
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricsInner>);

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;

    fn deref(&self) -> &MetricsInner {
        &self.0
    }
}

pub struct MetricsInner {
    registry: Registry,
    /// Webhook requests by outcome: accepted, duplicate, unauthorized, bad_request,
    /// too_large, unavailable, backlog_full.
    pub webhook_requests: IntCounterVec,
    /// Alerts in accepted (non-duplicate) webhooks, by status.
    pub alerts_received: IntCounterVec,
    /// Webhooks that repeated one already stored.
    pub webhook_duplicates: IntCounter,
    /// Time from the request's arrival to its answer, for webhooks that reached storage.
    pub ingest_duration: Histogram,
    /// Webhooks stored together in one commit (group commit).
    pub ingest_batch_size: Histogram,
    /// Receipts stored and not yet processed, this replica's estimate (`Backlog`).
    pub ingest_backlog: IntGauge,
    /// Storage operations that failed, by operation.
    pub storage_errors: IntCounterVec,
    /// HTTP requests by route pattern, method and status class.
    pub http_requests: IntCounterVec,
    /// HTTP request duration by route pattern.
    pub http_duration: HistogramVec,
    /// 1 while the last readiness check found storage writable.
    pub storage_writable: IntGauge,
    /// Constant 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// Constant 1, labelled with this replica's id in leases (`cluster.replica_name` and a
    /// per-process suffix), so that dashboards name the replica behind each `instance`.
    pub replica_info: IntGaugeVec,
    /// Outage incidents opened.
    pub incidents_opened: IntCounter,
    /// Draft changes by action: created, revised, withdrawn.
    pub draft_changes: IntCounterVec,
    /// Incident worker steps that failed (and will be retried).
    pub incident_step_failures: IntCounter,
    /// Incident worker batches planned again because the state changed under the plan.
    pub incident_replans: IntCounter,
    /// How long one holder kept the write connection (SQLite) or the serialised write
    /// lock (PostgreSQL), per transaction, by holder.
    pub write_hold: HistogramVec,
    /// Delivery attempts by channel and outcome: sent, retry, failed.
    pub deliveries: IntCounterVec,
    /// Time from publication to delivery, by channel.
    pub delivery_latency: HistogramVec,
    /// Time one send took, by channel.
    pub delivery_attempt_duration: HistogramVec,
    /// Time sends waited for the channel's rate limit, by channel.
    pub delivery_rate_limit_wait: HistogramVec,
    /// Deliveries claimed again after the attempt before never recorded its result (its
    /// replica died or stalled mid-send): possible duplicates, by channel.
    pub deliveries_reclaimed: IntCounterVec,
    /// Calls to Alertmanager's silences API that failed, by operation (create, expire).
    pub maintenance_silence_errors: IntCounterVec,
    /// Alerts that arrived inside a maintenance window's scope and times.
    pub maintenance_alerts: IntCounter,
    /// 1 while this replica holds the lease, by lease (correlation, timers).
    pub lease_held: IntGaugeVec,
    /// Times this replica took a lease that another held or that was free, by lease.
    pub lease_acquisitions: IntCounterVec,
    /// Drafts waiting for an operator.
    pub drafts_pending: IntGauge,
    /// Operator emails escalating a draft nobody acted on.
    pub draft_escalations: IntCounter,
    /// Time from a draft's creation to an operator's decision (publish or discard).
    pub draft_decision: Histogram,
    /// Deliveries waiting per channel (queue depth).
    pub outbox_pending: IntGaugeVec,
    /// Age of the oldest delivery still waiting, per channel (0 when none waits).
    pub outbox_oldest_pending_age: prometheus::GaugeVec,
    /// Open incidents by kind and level.
    pub incidents_open: IntGaugeVec,
    /// Stored webhooks the incident worker has not processed yet.
    pub receipts_pending: IntGauge,
    /// When the Watchdog alert last arrived (Unix seconds; start-up time until it does).
    pub watchdog_last_seen: prometheus::Gauge,
    /// Notices published, by kind and level.
    pub notices_published: IntCounterVec,
    /// Time from an incident's first alert to its first published notice.
    pub first_notice: Histogram,
    /// Storage operation duration by operation (the hot ones: store, claim, record, step).
    pub storage_duration: HistogramVec,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Connections closed at once because the connection limit was reached.
    pub connections_refused: IntCounter,
    /// What webhooks carried over the size limits, cut before storing, by kind.
    pub webhook_values_cut: IntCounterVec,
    /// Connections closed at once because their client held its share already.
    pub client_connections_refused: IntCounter,
    /// Open connections the server closed, by reason (a deadline, or a newcomer's place).
    pub connections_cut: IntCounterVec,
    /// Requests answered 408 because they took longer than the request timeout.
    pub requests_timed_out: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "samsa_relay_webhook_requests_total",
                "Alertmanager webhook requests by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let alerts_received = IntCounterVec::new(
            Opts::new(
                "samsa_relay_alerts_received_total",
                "Alerts in accepted (non-duplicate) webhooks, by status.",
            ),
            &["status"],
        )
        .expect("valid metric");
        let webhook_duplicates = IntCounter::new(
            "samsa_relay_webhook_duplicates_total",
            "Webhooks that repeated a notification already stored.",
        )
        .expect("valid metric");
        let ingest_duration = Histogram::with_opts(
            HistogramOpts::new(
                "samsa_relay_ingest_duration_seconds",
                "Time to parse, durably store and answer one webhook.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let ingest_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "samsa_relay_ingest_batch_webhooks",
                "Webhooks stored together in one durable commit (group commit).",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        let ingest_backlog = IntGauge::new(
            "samsa_relay_ingest_backlog",
            "Receipts stored and not yet processed by the incident worker, this replica's estimate; at webhook.max_backlog webhooks are refused (503).",
        )
        .expect("valid metric");
        let write_hold = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_write_hold_seconds",
                "How long one holder kept the database's write connection (SQLite) or the serialised write lock (PostgreSQL), per transaction",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
            &["holder"],
        )
        .expect("valid metric");
        let storage_errors = IntCounterVec::new(
            Opts::new(
                "samsa_relay_storage_errors_total",
                "Storage operations that failed, by operation.",
            ),
            &["operation"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "samsa_relay_http_requests_total",
                "HTTP requests by route pattern, method and status code class.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_http_request_duration_seconds",
                "HTTP request duration by route pattern.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let storage_writable = IntGauge::new(
            "samsa_relay_storage_writable",
            "1 while the last readiness check found storage writable, else 0.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "samsa_relay_build_info",
                "Constant 1, labelled with the relay's version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let replica_info = IntGaugeVec::new(
            Opts::new(
                "samsa_relay_replica_info",
                "Constant 1, labelled with this replica's id in leases (its name and a per-process suffix).",
            ),
            &["replica"],
        )
        .expect("valid metric");
        let incidents_opened = IntCounter::new(
            "samsa_relay_incidents_opened_total",
            "Outage incidents opened.",
        )
        .expect("valid metric");
        let draft_changes = IntCounterVec::new(
            Opts::new(
                "samsa_relay_draft_changes_total",
                "Notice draft changes by action: created, revised, withdrawn.",
            ),
            &["action"],
        )
        .expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "samsa_relay_deliveries_total",
                "Delivery attempts by channel and outcome: sent, retry (transient failure), failed (permanent).",
            ),
            &["channel", "outcome"],
        )
        .expect("valid metric");
        let delivery_buckets = vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ];
        let delivery_latency = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_delivery_latency_seconds",
                "Time from a notice's publication to its delivery, by channel.",
            )
            .buckets(delivery_buckets.clone()),
            &["channel"],
        )
        .expect("valid metric");
        let delivery_attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_delivery_attempt_duration_seconds",
                "Time one send attempt took, by channel.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["channel"],
        )
        .expect("valid metric");
        let delivery_rate_limit_wait = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_delivery_rate_limit_wait_seconds",
                "Time sends waited for their channel's rate limit, by channel.",
            )
            .buckets(delivery_buckets),
            &["channel"],
        )
        .expect("valid metric");
        let maintenance_silence_errors = IntCounterVec::new(
            Opts::new(
                "samsa_relay_maintenance_silence_errors_total",
                "Calls to Alertmanager's silences API for planned maintenance that failed, by operation (create, expire).",
            ),
            &["operation"],
        )
        .expect("valid metric");
        for operation in ["create", "expire"] {
            maintenance_silence_errors.with_label_values(&[operation]);
        }
        let maintenance_alerts = IntCounter::new(
            "samsa_relay_maintenance_alerts_total",
            "Alerts that arrived inside a planned maintenance window's scope and times: recorded on the window, no incident.",
        )
        .expect("valid metric");
        let deliveries_reclaimed = IntCounterVec::new(
            Opts::new(
                "samsa_relay_deliveries_reclaimed_total",
                "Deliveries claimed again after the attempt before never recorded its result (its replica died or stalled mid-send): possible duplicates, by channel.",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let lease_held = IntGaugeVec::new(
            Opts::new(
                "samsa_relay_lease_held",
                "1 while this replica holds the lease (correlation: processes webhooks into incidents; timers: review escalation and reminders), else 0.",
            ),
            &["lease"],
        )
        .expect("valid metric");
        let lease_acquisitions = IntCounterVec::new(
            Opts::new(
                "samsa_relay_lease_acquisitions_total",
                "Times this replica took a lease that was free, expired or held by another replica, by lease.",
            ),
            &["lease"],
        )
        .expect("valid metric");
        let drafts_pending = IntGauge::new(
            "samsa_relay_drafts_pending",
            "Drafts waiting for an operator.",
        )
        .expect("valid metric");
        let draft_escalations = IntCounter::new(
            "samsa_relay_draft_escalations_total",
            "Operator emails escalating a draft nobody acted on in time.",
        )
        .expect("valid metric");
        let draft_decision = Histogram::with_opts(
            HistogramOpts::new(
                "samsa_relay_draft_decision_seconds",
                "Time from a draft's creation to an operator's decision (publish or discard).",
            )
            .buckets(vec![
                30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
            ]),
        )
        .expect("valid metric");
        let outbox_pending = IntGaugeVec::new(
            Opts::new(
                "samsa_relay_outbox_pending",
                "Deliveries waiting per channel (queue depth).",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let outbox_oldest_pending_age = prometheus::GaugeVec::new(
            Opts::new(
                "samsa_relay_outbox_oldest_pending_age_seconds",
                "Age of the oldest delivery still waiting, per channel (0 when none waits).",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let incidents_open = IntGaugeVec::new(
            Opts::new(
                "samsa_relay_incidents_open",
                "Open incidents by kind (outage, monitoring, drill) and level.",
            ),
            &["kind", "level"],
        )
        .expect("valid metric");
        let receipts_pending = IntGauge::new(
            "samsa_relay_receipts_pending",
            "Stored webhooks the incident worker has not processed yet.",
        )
        .expect("valid metric");
        let watchdog_last_seen = prometheus::Gauge::new(
            "samsa_relay_watchdog_last_seen_timestamp_seconds",
            "When the Watchdog alert last arrived (Unix seconds; the start-up time until it does).",
        )
        .expect("valid metric");
        let notices_published = IntCounterVec::new(
            Opts::new(
                "samsa_relay_notices_published_total",
                "Notices published, by kind and level.",
            ),
            &["kind", "level"],
        )
        .expect("valid metric");
        let first_notice = Histogram::with_opts(
            HistogramOpts::new(
                "samsa_relay_first_notice_seconds",
                "Time from an incident's first alert to its first published notice.",
            )
            .buckets(vec![
                60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0,
            ]),
        )
        .expect("valid metric");
        let storage_duration = HistogramVec::new(
            HistogramOpts::new(
                "samsa_relay_storage_operation_duration_seconds",
                "Storage operation duration by operation.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["operation"],
        )
        .expect("valid metric");
        let connections_open =
            IntGauge::new("samsa_relay_connections_open", "HTTP connections open now.")
                .expect("valid metric");
        let connections_refused = IntCounter::new(
            "samsa_relay_connections_refused_total",
            "Connections closed at once because the connection limit was reached.",
        )
        .expect("valid metric");
        let webhook_values_cut = IntCounterVec::new(
            Opts::new(
                "samsa_relay_webhook_values_cut_total",
                "Parts of accepted webhooks cut to the size limits before storing: label_value, annotation_value, entry_dropped (a label or annotation over the count or with a too long name), other_string.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let client_connections_refused = IntCounter::new(
            "samsa_relay_client_connections_refused_total",
            "Connections closed at once because their client had server.max_connections_per_client open.",
        )
        .expect("valid metric");
        let connections_cut = IntCounterVec::new(
            Opts::new(
                "samsa_relay_connections_cut_total",
                "Open connections the server closed: header_timeout (no complete request head in time, idle keep-alive included), write_timeout (the client did not read its response in time), evicted (closed at the connection cap for a client with fewer connections).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let requests_timed_out = IntCounter::new(
            "samsa_relay_requests_timed_out_total",
            "Requests that ran past the request timeout (answered 408, or 503 for webhooks so that Alertmanager retries).",
        )
        .expect("valid metric");
        let incident_step_failures = IntCounter::new(
            "samsa_relay_incident_step_failures_total",
            "Incident worker steps that failed and will be retried.",
        )
        .expect("valid metric");
        let incident_replans = IntCounter::new(
            "samsa_relay_incident_replans_total",
            "Incident worker batches planned again because an operator, a drill or a maintenance window changed the state while the batch was planned.",
        )
        .expect("valid metric");

        for collector in [
            Box::new(webhook_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts_received.clone()),
            Box::new(webhook_duplicates.clone()),
            Box::new(ingest_duration.clone()),
            Box::new(ingest_batch_size.clone()),
            Box::new(ingest_backlog.clone()),
            Box::new(write_hold.clone()),
            Box::new(storage_errors.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(storage_writable.clone()),
            Box::new(build_info.clone()),
            Box::new(replica_info.clone()),
            Box::new(incidents_opened.clone()),
            Box::new(draft_changes.clone()),
            Box::new(incident_step_failures.clone()),
            Box::new(incident_replans.clone()),
            Box::new(deliveries.clone()),
            Box::new(delivery_latency.clone()),
            Box::new(delivery_attempt_duration.clone()),
            Box::new(delivery_rate_limit_wait.clone()),
            Box::new(deliveries_reclaimed.clone()),
            Box::new(maintenance_silence_errors.clone()),
            Box::new(maintenance_alerts.clone()),
            Box::new(lease_held.clone()),
            Box::new(lease_acquisitions.clone()),
            Box::new(drafts_pending.clone()),
            Box::new(draft_escalations.clone()),
            Box::new(draft_decision.clone()),
            Box::new(outbox_pending.clone()),
            Box::new(outbox_oldest_pending_age.clone()),
            Box::new(incidents_open.clone()),
            Box::new(receipts_pending.clone()),
            Box::new(watchdog_last_seen.clone()),
            Box::new(notices_published.clone()),
            Box::new(first_notice.clone()),
            Box::new(storage_duration.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(client_connections_refused.clone()),
            Box::new(webhook_values_cut.clone()),
            Box::new(connections_cut.clone()),
            Box::new(requests_timed_out.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // Show the label sets operators alert on from the first scrape, not only after the
        // first event.
        for outcome in [
            "accepted",
            "duplicate",
            "unauthorized",
            "bad_request",
            "too_large",
            "unavailable",
            "backlog_full",
        ] {
            webhook_requests.with_label_values(&[outcome]);
        }
        write_hold.with_label_values(&["incident_worker"]);
        for kind in [
            "label_value",
            "annotation_value",
            "entry_dropped",
            "other_string",
        ] {
            webhook_values_cut.with_label_values(&[kind]);
        }
        for reason in ["header_timeout", "write_timeout", "evicted"] {
            connections_cut.with_label_values(&[reason]);
        }
        for status in ["firing", "resolved"] {
            alerts_received.with_label_values(&[status]);
        }
        for lease in ["correlation", "timers"] {
            lease_held.with_label_values(&[lease]);
            lease_acquisitions.with_label_values(&[lease]);
        }
        for action in ["created", "revised", "withdrawn"] {
            draft_changes.with_label_values(&[action]);
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        Metrics(std::sync::Arc::new(MetricsInner {
            registry,
            webhook_requests,
            alerts_received,
            webhook_duplicates,
            ingest_duration,
            ingest_batch_size,
            ingest_backlog,
            write_hold,
            storage_errors,
            http_requests,
            http_duration,
            storage_writable,
            build_info,
            replica_info,
            incidents_opened,
            draft_changes,
            incident_step_failures,
            incident_replans,
            deliveries,
            delivery_latency,
            delivery_attempt_duration,
            delivery_rate_limit_wait,
            deliveries_reclaimed,
            maintenance_silence_errors,
            maintenance_alerts,
            lease_held,
            lease_acquisitions,
            drafts_pending,
            draft_escalations,
            draft_decision,
            outbox_pending,
            outbox_oldest_pending_age,
            incidents_open,
            receipts_pending,
            watchdog_last_seen,
            notices_published,
            first_notice,
            storage_duration,
            connections_open,
            connections_refused,
            client_connections_refused,
            webhook_values_cut,
            connections_cut,
            requests_timed_out,
        }))
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
