-- The outbox keeps every delivery ever made (a publication to 10,000 subscribers adds
-- 10,000 rows), and two reads that run every few seconds looked through all of it: the
-- operators' failed deliveries (every second, for their reminders) and the pending
-- deliveries per channel (the gauges). With a million rows each took 70-90 ms. Each now
-- has an index of the rows it wants only, which a delivery enters and leaves as its
-- state changes.
CREATE INDEX outbox_failed_operators ON outbox (id) WHERE state = 'failed' AND subscriber_id IS NULL;
CREATE INDEX outbox_pending ON outbox (channel, created_at) WHERE state = 'pending';
