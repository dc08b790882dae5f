-- Orders belong to the user (openid), not to the session that placed them: a new login sees
-- the user's orders, and an Idempotency-Key is the user's, whichever session sends it.
-- session_id stays as a record of the session that placed the order, without a foreign key,
-- so that expired sessions can be deleted.

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_session_id_fkey;
DROP INDEX orders_idempotency;

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
