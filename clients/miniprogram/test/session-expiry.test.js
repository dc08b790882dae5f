// Sessions that really expire: a service with the shortest session TTL it accepts (60 s), two
// users who log in, and the client's transparent re-login once the TTL has passed. This file
// spends a minute waiting; `make test-js` runs it alongside the others.
'use strict';

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createClient } = require('../minipay.js');
const { startService } = require('./support/service.js');
const { createWx } = require('./support/wx.js');

describe('expired session', () => {
  let service;
  const users = {};

  before(async () => {
    service = await startService({ MINIPAY_SESSION_TTL_SECS: '60' });
    for (const name of ['browser', 'payer']) {
      const wx = createWx(service, `expiry-${name}`);
      const mp = createClient({ baseUrl: service.base, wx, retryDelayMs: 20, timeoutMs: 15000 });
      users[name] = { wx, mp };
    }
    const session = await users.browser.mp.login();
    assert.equal(session.expires_in, 60);
    // The payer's order exists before the session expires; it is paid after.
    const key = { idempotencyKey: 'payer-tap-1' };
    users.payer.order = await users.payer.mp.createOrder('sms-100', 1, key);
    await new Promise((resolve) => setTimeout(resolve, session.expires_in * 1000 + 1500));
  });

  after(async () => {
    await service?.stop();
  });

  test('an order placed after expiry: one SESSION_REQUIRED, a new login, then paid', async () => {
    const { wx, mp } = users.browser;
    const order = await mp.createOrder('coffee-latte', 1);
    assert.equal((await mp.pay(order)).status, 'paid');
    assert.equal(wx.logins, 2);
    const refused = wx.requests.filter((r) => r.code === 'SESSION_REQUIRED');
    const seen = refused.map((r) => [r.method, r.path, r.status]);
    assert.deepEqual(seen, [['POST', '/v1/orders', 401]]);
  });

  // Orders (and their idempotency keys) belong to the user (openid), not to one session: after
  // the re-login the same user sees the same order, and the same key names it.
  test('an order placed before expiry is paid after it, and its key still names it', async () => {
    const { wx, mp, order } = users.payer;
    assert.equal((await mp.pay(order)).status, 'paid');
    assert.equal(wx.logins, 2, 'one re-login after the expiry');
    const refused = wx.requests.filter((r) => r.code === 'SESSION_REQUIRED');
    assert.equal(refused.length, 1, 'the expired token was refused once');
    assert.ok(
      !wx.requests.some((r) => r.code === 'ORDER_NOT_FOUND'),
      'the new session sees the order'
    );
    const again = await mp.createOrder('sms-100', 1, { idempotencyKey: 'payer-tap-1' });
    assert.equal(again.out_trade_no, order.out_trade_no, 'the key names the same order');
    assert.equal(again.status, 'paid');
  });
});
