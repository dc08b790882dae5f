-- Refunds (docs/refunds.md). An order gains the `refunded` status and three counters kept in
-- the transactions that change them: `refunded_fee` (refunds that succeeded),
-- `refund_reserved` (every refund not failed: the guard that keeps refunds within the total)
-- and `refund_count` (at most 50 per order); `refund_sent_at` spaces two refund requests of
-- one order a minute apart, as WeChat requires.
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'ready', 'paid', 'failed', 'closed', 'refunded'));
ALTER TABLE orders ADD COLUMN refunded_fee    BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_count    BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_sent_at  BIGINT;
ALTER TABLE orders ADD CONSTRAINT orders_refunds_within_total
    CHECK (refund_reserved <= total_fee AND refunded_fee <= refund_reserved);

-- One row per refund: the parameters frozen when it was created (sent unchanged on every
-- attempt: WeChat refunds once per out_refund_no and amount), where it stands, and WeChat's
-- answers. `source` is 'api' (requested through minipay) or 'console' (made by hand in
-- WeChat's merchant console and learnt from its notify: an external refund, never sent).
CREATE TABLE refunds (
    out_refund_no   TEXT    PRIMARY KEY,
    out_trade_no    TEXT    NOT NULL,
    total_fee       BIGINT  NOT NULL,               -- the order's amount, as sent
    refund_fee      BIGINT  NOT NULL CHECK (refund_fee >= 1),
    reason          TEXT    NOT NULL DEFAULT '',    -- sent as refund_desc
    params          TEXT    NOT NULL,               -- the frozen refund request (JSON); '' for console refunds
    idempotency_key TEXT,
    source          TEXT    NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'console')),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'processing', 'succeeded', 'failed', 'abnormal')),
    refund_id       TEXT,                           -- WeChat's, once accepted
    error_code      TEXT,                           -- when failed or abnormal, or while held (NOTENOUGH)
    error_message   TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,     -- refund requests sent
    runs            BIGINT  NOT NULL DEFAULT 0,     -- jobs queued (names the next job's key)
    queries         BIGINT  NOT NULL DEFAULT 0,     -- refundqueries made while processing
    next_check_at   BIGINT,                         -- when the reconciler next queues its job (open refunds)
    held_since      BIGINT,                         -- first NOTENOUGH
    sent_at         BIGINT,                         -- first request sent
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    accepted_at     BIGINT,
    succeeded_at    BIGINT
);

CREATE INDEX refunds_order ON refunds (out_trade_no, created_at);
CREATE UNIQUE INDEX refunds_idempotency ON refunds (out_trade_no, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX refunds_due ON refunds (next_check_at) WHERE status IN ('pending', 'processing');
