//! The gauges of state kept elsewhere (the database pool, the caches, the queues), read when
//! the metrics are scraped rather than kept up to date on every change.

use super::Services;

impl Services {
    /// Sets the sampled gauges of [`crate::metrics::Metrics`] to what they are now: the pool's
    /// connections, the caches' sizes, and the queues (the outboxes and the to-device messages
    /// are counted in the database: one query each per scrape). A failed count leaves the
    /// gauge at its previous value.
    pub async fn sample_gauges(&self) {
        let m = &self.metrics;
        let size = i64::from(self.db.pool.size());
        let idle = self.db.pool.num_idle() as i64;
        m.db_connections
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        m.db_connections.with_label_values(&["idle"]).set(idle);
        m.db_max_connections
            .set(i64::from(self.db.pool.options().get_max_connections()));
        m.cache_size
            .with_label_values(&[crate::metrics::CACHE_TOKENS])
            .set(self.tokens.entries() as i64);
        m.cache_size
            .with_label_values(&[crate::metrics::CACHE_ROOMS])
            .set(self.room_cache.entries() as i64);
        let ephemeral: usize = self
            .federation_state
            .queues
            .running
            .lock()
            .values()
            .map(|q| q.ephemeral.lock().len())
            .sum();
        m.federation_queue_depth
            .with_label_values(&["ephemeral"])
            .set(ephemeral as i64);
        match self.db.outbox_depths().await {
            Ok((pdus, edus)) => {
                m.federation_queue_depth
                    .with_label_values(&["pdu"])
                    .set(pdus);
                m.federation_queue_depth
                    .with_label_values(&["edu"])
                    .set(edus);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counting the federation outbox"),
        }
        match self.db.to_device_total().await {
            Ok(n) => m.to_device_queue.set(n),
            Err(e) => tracing::warn!(error = %e, "metrics: counting to-device messages"),
        }
    }
}
