-- Daily bill reconciliation (docs/bills.md): one run per Beijing day, its stored report
-- (both sides' totals and every difference), and the orders it healed (an order query queued
-- for a payment WeChat lists and minipay held as pending or ready). Re-running a day replaces
-- its report in one transaction. Times are Unix milliseconds.
CREATE TABLE bill_runs (
    bill_date          TEXT    PRIMARY KEY,     -- YYYY-MM-DD, a Beijing-time day
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'no_bill', 'failed')),
    requested_by       TEXT    NOT NULL,        -- schedule, admin, cli
    requested_at       BIGINT  NOT NULL,
    attempts           BIGINT  NOT NULL DEFAULT 0,  -- downloads tried in the current run
    claims             BIGINT  NOT NULL DEFAULT 0,  -- attempts ever claimed; names each job
    next_attempt_at    BIGINT,                      -- pending: when the next attempt is due
    give_up_at         BIGINT  NOT NULL,            -- pending: no retry after this
    last_error         TEXT,
    started_at         BIGINT,
    finished_at        BIGINT,
    statement_rows     BIGINT,
    wechat_payments    BIGINT  NOT NULL DEFAULT 0,
    wechat_payment_fee BIGINT  NOT NULL DEFAULT 0,
    wechat_refunds     BIGINT  NOT NULL DEFAULT 0,
    wechat_refund_fee  BIGINT  NOT NULL DEFAULT 0,
    local_payments     BIGINT  NOT NULL DEFAULT 0,
    local_payment_fee  BIGINT  NOT NULL DEFAULT 0,
    local_refunds      BIGINT  NOT NULL DEFAULT 0,
    local_refund_fee   BIGINT  NOT NULL DEFAULT 0,
    mismatches         BIGINT  NOT NULL DEFAULT 0,
    healed             BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX bill_runs_due ON bill_runs (next_attempt_at) WHERE status = 'pending';

CREATE TABLE bill_mismatches (
    id            INTEGER PRIMARY KEY,
    bill_date     TEXT    NOT NULL REFERENCES bill_runs (bill_date) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('missing_local', 'missing_wechat', 'amount', 'status')),
    out_trade_no  TEXT    NOT NULL,
    out_refund_no TEXT,
    wechat        TEXT    NOT NULL,             -- WeChat's side, e.g. 'SUCCESS 3400' or 'absent'
    local         TEXT    NOT NULL,             -- minipay's side, e.g. 'ready 3400' or 'absent'
    healable      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX bill_mismatches_day ON bill_mismatches (bill_date, id);
CREATE INDEX bill_mismatches_order ON bill_mismatches (out_trade_no);

CREATE TABLE bill_healed (
    bill_date     TEXT    NOT NULL REFERENCES bill_runs (bill_date) ON DELETE CASCADE,
    out_trade_no  TEXT    NOT NULL,
    status_before TEXT    NOT NULL,             -- pending or ready when the query was queued
    queued_at     BIGINT  NOT NULL,
    PRIMARY KEY (bill_date, out_trade_no)
);

-- A day's payments by WeChat's payment time (yyyyMMddHHmmss, Beijing), as the bill cuts days.
CREATE INDEX orders_time_end ON orders (time_end) WHERE time_end IS NOT NULL;
