-- Merchant events (the outbox): each written in the transaction that makes the change it
-- reports, so there is no paid order without its event and no event for a change that rolled
-- back. Delivered by `deliver_event` jobs queued in the same transaction (when a webhook URL is
-- configured); every attempt is kept in `event_attempts`. Times are Unix milliseconds.
CREATE TABLE events (
    id              TEXT    PRIMARY KEY,        -- evt_ + 32 hex digits: the webhook-id of every attempt
    type            TEXT    NOT NULL,           -- order.paid, refund.succeeded, payment.anomaly, ...
    created_at      BIGINT  NOT NULL,
    data            TEXT    NOT NULL,           -- the order's or refund's admin view when recorded (JSON)
    out_trade_no    TEXT,
    out_refund_no   TEXT,
    dedupe_key      TEXT    NOT NULL UNIQUE,    -- one event per change: 'order.paid:MP…', 'payment.anomaly:paid_twice:4200…'
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT  NOT NULL DEFAULT 0, -- attempts made, redeliveries included
    round_start     BIGINT  NOT NULL DEFAULT 1, -- the attempt that began the current schedule (redeliver restarts it)
    next_attempt_at BIGINT,                     -- when the queued attempt is due (pending events with a job)
    last_attempt_at BIGINT,
    last_error      TEXT,                       -- of the last attempt, when it failed
    delivered_at    BIGINT
);

CREATE INDEX events_order ON events (out_trade_no, created_at);
CREATE INDEX events_state ON events (state, created_at);

CREATE TABLE event_attempts (
    id          BIGSERIAL PRIMARY KEY,
    event_id    TEXT    NOT NULL REFERENCES events (id),
    attempt     BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,               -- when it was sent
    status      BIGINT,                         -- the HTTP status, when the endpoint answered
    error       TEXT,                           -- why it failed, when it did
    duration_ms BIGINT  NOT NULL,
    response    TEXT    NOT NULL DEFAULT ''     -- the first KiB of the answer
);

CREATE INDEX event_attempts_event ON event_attempts (event_id, attempt);
