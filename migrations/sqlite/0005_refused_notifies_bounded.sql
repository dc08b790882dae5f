-- Refused notifies (forgeries, malformed bodies, WeChat's signed notices of unpaid orders)
-- are kept as a bounded summary instead of whole bodies, which let anyone fill the disk: the
-- same verdict from the same client within a minute is one row with a count, and each row
-- keeps what an operator needs (times, client IP, verdict, detail, and the first body's
-- SHA-256, length and first 256 bytes at most). Rows are deleted after
-- MINIPAY_REFUSED_NOTIFY_RETENTION_SECS. `notifies` keeps verified payments only.
CREATE TABLE refused_notifies (
    id            INTEGER PRIMARY KEY,
    window_start  BIGINT  NOT NULL,   -- Unix ms: the start of the minute the group began in
    first_at      BIGINT  NOT NULL,
    last_at       BIGINT  NOT NULL,
    peer          TEXT    NOT NULL,   -- the client IP ('' on rows carried over from before)
    verdict       TEXT    NOT NULL,
    count         BIGINT  NOT NULL,
    detail        TEXT    NOT NULL,   -- of the first notify in the group
    out_trade_no  TEXT,               -- of the first notify in the group
    body_sha256   TEXT    NOT NULL,   -- hex ('' on rows carried over from before)
    body_prefix   TEXT    NOT NULL,
    body_len      BIGINT  NOT NULL
);

CREATE UNIQUE INDEX refused_notifies_group ON refused_notifies (verdict, peer, window_start);
CREATE INDEX refused_notifies_age ON refused_notifies (last_at);
CREATE INDEX refused_notifies_order ON refused_notifies (out_trade_no);

-- The refused notifies stored so far, summarised the same way (64 characters are at most 256
-- bytes), then removed from `notifies`.
INSERT INTO refused_notifies (window_start, first_at, last_at, peer, verdict, count, detail,
                              out_trade_no, body_sha256, body_prefix, body_len)
SELECT (received_at / 60000) * 60000, MIN(received_at), MAX(received_at), '', verdict, COUNT(*),
       substr(MIN(detail), 1, 64), MIN(out_trade_no), '', substr(MIN(raw), 1, 64), MAX(length(raw))
  FROM notifies
 WHERE transaction_id IS NULL
 GROUP BY verdict, (received_at / 60000) * 60000;
DELETE FROM notifies WHERE transaction_id IS NULL;
