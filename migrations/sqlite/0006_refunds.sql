-- Refunds (docs/refunds.md). An order gains the `refunded` status and three counters kept in
-- the transactions that change them: `refunded_fee` (refunds that succeeded),
-- `refund_reserved` (every refund not failed: the guard that keeps refunds within the total)
-- and `refund_count` (at most 50 per order); `refund_sent_at` spaces two refund requests of
-- one order a minute apart, as WeChat requires.

-- SQLite cannot change a CHECK: the table is rebuilt with the same columns, then the new ones.
CREATE TABLE orders_new (
    out_trade_no      TEXT    PRIMARY KEY,
    session_id        BIGINT,                     -- the session that placed it (it may be gone); NULL: the merchant's backend
    openid            TEXT    NOT NULL,
    sku               TEXT,
    quantity          BIGINT,
    total_fee         BIGINT  NOT NULL CHECK (total_fee >= 1),
    description       TEXT    NOT NULL,
    attach            TEXT    NOT NULL DEFAULT '',
    payer_ip          TEXT    NOT NULL,
    idempotency_key   TEXT,
    params            TEXT    NOT NULL,          -- the unifiedorder business parameters, frozen (JSON)
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'ready', 'paid', 'failed', 'closed', 'refunded')),
    prepay_id         TEXT,
    pay_params        TEXT,                      -- the signed wx.requestPayment parameters (JSON)
    error_code        TEXT,
    error_message     TEXT,
    transaction_id    TEXT,
    time_end          TEXT,
    cash_fee          BIGINT,
    prepay_attempts   BIGINT  NOT NULL DEFAULT 0,
    prepay_generation BIGINT  NOT NULL DEFAULT 0, -- bumped when the reconciler re-queues a lost prepay job
    reconcile_checks  BIGINT  NOT NULL DEFAULT 0,
    next_check_at     BIGINT,                     -- when the reconciler next asks WeChat (ready orders)
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    ready_at          BIGINT,
    paid_at           BIGINT,
    expires_at        BIGINT  NOT NULL,
    refunded_fee      BIGINT  NOT NULL DEFAULT 0, -- refunds that succeeded
    refund_reserved   BIGINT  NOT NULL DEFAULT 0, -- every refund not failed
    refund_count      BIGINT  NOT NULL DEFAULT 0,
    refund_sent_at    BIGINT,                     -- the last refund request sent
    CHECK (refund_reserved <= total_fee AND refunded_fee <= refund_reserved)
);

INSERT INTO orders_new (out_trade_no, session_id, openid, sku, quantity, total_fee, description,
    attach, payer_ip, idempotency_key, params, status, prepay_id, pay_params, error_code,
    error_message, transaction_id, time_end, cash_fee, prepay_attempts, prepay_generation,
    reconcile_checks, next_check_at, created_at, updated_at, ready_at, paid_at, expires_at)
SELECT out_trade_no, session_id, openid, sku, quantity, total_fee, description,
    attach, payer_ip, idempotency_key, params, status, prepay_id, pay_params, error_code,
    error_message, transaction_id, time_end, cash_fee, prepay_attempts, prepay_generation,
    reconcile_checks, next_check_at, created_at, updated_at, ready_at, paid_at, expires_at
  FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;

CREATE INDEX orders_due_checks ON orders (next_check_at) WHERE status = 'ready';
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending';
CREATE INDEX orders_status ON orders (status);
CREATE UNIQUE INDEX orders_user_idempotency ON orders (openid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX orders_user_status ON orders (openid, status);

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
