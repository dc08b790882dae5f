-- minipay's own tables. Times are Unix milliseconds (BIGINT), money is integer fen.
-- apalis keeps its queue in the same database (tables Jobs and Workers).

CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT    NOT NULL UNIQUE,   -- SHA-256 of the bearer token; the token itself is never stored
    openid      TEXT    NOT NULL,
    session_key TEXT    NOT NULL,          -- from jscode2session; never leaves the server
    unionid     TEXT,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

CREATE TABLE products (
    sku         TEXT    PRIMARY KEY,
    description TEXT    NOT NULL,
    price       BIGINT  NOT NULL CHECK (price >= 1),
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE orders (
    out_trade_no      TEXT    PRIMARY KEY,
    session_id        BIGINT  REFERENCES sessions (id),   -- NULL for orders the merchant's backend created
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

CREATE UNIQUE INDEX orders_idempotency ON orders (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX orders_due_checks ON orders (next_check_at) WHERE status = 'ready';
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending';
CREATE INDEX orders_status ON orders (status);

-- Every notify received, verified or not, with its raw body and the verdict.
CREATE TABLE notifies (
    id             INTEGER PRIMARY KEY,
    received_at    BIGINT  NOT NULL,
    verdict        TEXT    NOT NULL,   -- accepted, or why it was refused
    detail         TEXT    NOT NULL DEFAULT '',
    out_trade_no   TEXT,
    transaction_id TEXT    UNIQUE,     -- set only on verified payments: one row per payment
    total_fee      BIGINT,
    cash_fee       BIGINT,
    time_end       TEXT,
    raw            TEXT    NOT NULL,
    applied_at     BIGINT
);

CREATE INDEX notifies_order ON notifies (out_trade_no);

-- What happened to an order: prepay attempts, status changes, reconciliation, alerts.
CREATE TABLE order_events (
    id           INTEGER PRIMARY KEY,
    out_trade_no TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX order_events_order ON order_events (out_trade_no, id);
