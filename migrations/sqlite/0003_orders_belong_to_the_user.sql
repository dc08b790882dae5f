-- Orders belong to the user (openid), not to the session that placed them: a new login sees
-- the user's orders, and an Idempotency-Key is the user's, whichever session sends it.
-- session_id stays as a record of the session that placed the order, without a foreign key,
-- so that expired sessions can be deleted.

-- SQLite cannot drop a foreign key: the table is rebuilt with the same columns in the same order.
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
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'ready', 'paid', 'failed', 'closed')),
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
    expires_at        BIGINT  NOT NULL
);

INSERT INTO orders_new SELECT * FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;

CREATE INDEX orders_due_checks ON orders (next_check_at) WHERE status = 'ready';
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending';
CREATE INDEX orders_status ON orders (status);

-- Before this migration a key sent from two sessions of one user made two orders: the oldest
-- keeps the key, so a retry finds it.
UPDATE orders SET idempotency_key = NULL
 WHERE idempotency_key IS NOT NULL
   AND EXISTS (SELECT 1 FROM orders o
                WHERE o.openid = orders.openid AND o.idempotency_key = orders.idempotency_key
                  AND (o.created_at < orders.created_at
                       OR (o.created_at = orders.created_at AND o.out_trade_no < orders.out_trade_no)));

CREATE UNIQUE INDEX orders_user_idempotency ON orders (openid, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A user's orders by status (their unpaid orders, for the per-user cap).
CREATE INDEX orders_user_status ON orders (openid, status);
