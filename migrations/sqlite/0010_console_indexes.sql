-- The operator console's reads: orders by creation time (the latest orders, search by day,
-- the day's figures), by payment time (the day's payments), by WeChat's transaction_id, and
-- the latest alerts.
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_paid ON orders (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX orders_transaction ON orders (transaction_id) WHERE transaction_id IS NOT NULL;
CREATE INDEX order_events_alerts ON order_events (at) WHERE kind = 'alert';
