// Rate limits of the real service, set low: the helper surfaces a 429 as an `http` error with
// the contract's code (`RATE_LIMITED`, `TOO_MANY_UNPAID_ORDERS`), the status and the wait the
// service asked for, after the wait it was allowed to sit out (maxRetryAfterMs).
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createClient, MinipayError, Kinds } = require('../minipay.js');
const { startService } = require('./support/service.js');
const { createWx } = require('./support/wx.js');

function client(service, user) {
  const wx = createWx(service, user);
  // A wait longer than 1 s is not sat out: the call rejects so the page can tell the user.
  const mp = createClient({ baseUrl: service.base, wx, retryDelayMs: 20, maxRetryAfterMs: 1000 });
  return { wx, mp };
}

async function rejection(promise) {
  const error = await promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (e) => e
  );
  assert.ok(error instanceof MinipayError, `not a MinipayError: ${error?.stack ?? error}`);
  return error;
}

describe('orders per user (MINIPAY_LIMIT_ORDERS_PER_USER=2)', () => {
  let service;

  before(async () => {
    service = await startService({ MINIPAY_LIMIT_ORDERS_PER_USER: '2' });
  });

  after(async () => {
    await service?.stop();
  });

  test('the third order in a minute rejects http 429 RATE_LIMITED with the wait', async () => {
    const { wx, mp } = client(service, 'limited');
    const first = await mp.createOrder('sms-100', 1, { idempotencyKey: 'limited-tap-1' });
    await mp.createOrder('sms-100', 1);
    const error = await rejection(mp.createOrder('sms-100', 1));
    assert.equal(error.kind, Kinds.HTTP);
    assert.equal(error.status, 429);
    assert.equal(error.code, 'RATE_LIMITED');
    // Two a minute: the next one comes back within 30 s.
    assert.ok(error.retryAfterMs >= 1000 && error.retryAfterMs <= 30000, `${error.retryAfterMs}`);
    assert.ok(error.idempotencyKey, 'the key to retry the same purchase with');
    assert.equal(wx.requests.filter((r) => r.status === 429).length, 1, 'not retried in a loop');
    // Retrying the first purchase (same key) is not a new order: answered, not limited.
    const again = await mp.createOrder('sms-100', 1, { idempotencyKey: 'limited-tap-1' });
    assert.equal(again.out_trade_no, first.out_trade_no);
    // Another user has a budget of their own.
    const other = client(service, 'unlimited');
    assert.equal((await other.mp.createOrder('sms-100', 1)).status, 'pending');
  });
});

describe('unpaid orders per user (MINIPAY_LIMIT_UNPAID_PER_USER=1)', () => {
  let service;

  before(async () => {
    service = await startService({ MINIPAY_LIMIT_UNPAID_PER_USER: '1' });
  });

  after(async () => {
    await service?.stop();
  });

  test('a second unpaid order rejects TOO_MANY_UNPAID_ORDERS; after paying, one more', async () => {
    const { mp } = client(service, 'holder');
    const order = await mp.createOrder('sms-100', 1);
    const error = await rejection(mp.createOrder('sms-100', 1));
    assert.equal(error.kind, Kinds.HTTP);
    assert.equal(error.status, 429);
    assert.equal(error.code, 'TOO_MANY_UNPAID_ORDERS');
    assert.ok(error.retryAfterMs > 1000, `${error.retryAfterMs}`);
    assert.equal((await mp.pay(order)).status, 'paid');
    assert.equal((await mp.createOrder('sms-100', 1)).status, 'pending');
  });
});
