// The client helper against the real service in simulator mode: one service for the file,
// tests in sequence (one of them forces the simulator's next unifiedorder answer).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { createClient, MinipayError, Kinds } = require('../minipay.js');
const { startService } = require('./support/service.js');
const { createWx } = require('./support/wx.js');

let service;

before(async () => {
  service = await startService();
});

after(async () => {
  await service?.stop();
});

function client(user, options = {}) {
  const wx = createWx(service, user);
  const settings = { baseUrl: service.base, wx, retryDelayMs: 20, timeoutMs: 15000 };
  const mp = createClient({ ...settings, ...options });
  return { wx, mp };
}

/** Awaits a rejection and checks it is a MinipayError of `kind`. */
async function rejection(promise, kind) {
  const error = await promise.then(
    (value) => assert.fail(`expected a ${kind} error, got ${JSON.stringify(value)}`),
    (e) => e
  );
  assert.ok(error instanceof MinipayError, `not a MinipayError: ${error?.stack ?? error}`);
  assert.equal(error.kind, kind, `kind ${error.kind}: ${error.message}`);
  return error;
}

test('happy path: login, createOrder, pay resolves paid', async () => {
  const { wx, mp } = client('happy');
  const session = await mp.login();
  assert.ok(session.token);
  assert.equal(wx.storage.get('minipay_session_token'), session.token, 'token kept in wx storage');

  const order = await mp.createOrder('sms-100', 2);
  assert.equal(order.status, 'pending');
  assert.equal(order.total_fee, 176, 'priced from the catalog: 2 × 88 fen');

  const result = await mp.pay(order);
  assert.equal(result.status, 'paid');
  assert.equal(result.order.out_trade_no, order.out_trade_no);
  assert.match(result.order.transaction_id, /^\d+$/);

  // wx.requestPayment got exactly the server's pay_params (the stand-in checked paySign).
  assert.equal(wx.payments.length, 1);
  assert.deepEqual(Object.keys(wx.payments[0]).sort(), [
    'nonceStr',
    'package',
    'paySign',
    'signType',
    'timeStamp',
  ]);
  assert.match(wx.payments[0].package, /^prepay_id=/);
  const admin = await service.adminOrder(order.out_trade_no);
  assert.equal(admin.status, 'paid');
});

test('a stored token the service does not know: the client logs in again by itself', async () => {
  const wx = createWx(service, 'returning');
  wx.storage.set('minipay_session_token', 'token-from-an-old-install');
  const mp = createClient({ baseUrl: service.base, wx, retryDelayMs: 20 });

  const order = await mp.createOrder('coffee-latte', 1);
  assert.equal(order.total_fee, 1800);
  assert.deepEqual(
    wx.requests.map((r) => [r.method, r.path, r.status, r.code]),
    [
      ['POST', '/v1/orders', 401, 'SESSION_REQUIRED'],
      ['POST', '/v1/sessions', 201, null],
      ['POST', '/v1/orders', 202, null],
    ]
  );
  assert.notEqual(wx.storage.get('minipay_session_token'), 'token-from-an-old-install');
  assert.equal((await mp.pay(order)).status, 'paid');
});

test('user cancels: pay rejects cancelled, and the same order can be paid afterwards', async () => {
  const { wx, mp } = client('canceller');
  const order = await mp.createOrder('vip-month', 1);
  wx.payBehaviour = 'cancel';

  const error = await rejection(mp.pay(order), Kinds.CANCELLED);
  assert.equal(error.errMsg, 'requestPayment:fail cancel');
  assert.equal(error.order.status, 'ready');
  assert.equal((await service.adminOrder(order.out_trade_no)).status, 'ready', 'nothing was paid');

  wx.payBehaviour = 'pay';
  assert.equal((await mp.pay(order)).status, 'paid');
});

test('failed order: WeChat refuses it for good, pay rejects failed with WeChat code', async () => {
  const { wx, mp } = client('refused');
  await mp.login();
  // The next unifiedorder (this test's order: the tests run one at a time) is refused.
  await service.sim('force', {
    out_trade_no: '*',
    kind: 'err_code',
    err_code: 'ORDERCLOSED',
    err_code_des: '订单已关闭',
    times: 1,
  });
  const order = await mp.createOrder('sms-100', 1);

  const error = await rejection(mp.pay(order), Kinds.FAILED);
  assert.equal(error.code, 'ORDERCLOSED');
  assert.equal(error.wechatMessage, '订单已关闭');
  assert.equal(error.order.status, 'failed');
  assert.equal(wx.payments.length, 0, 'no payment sheet for a failed order');
});

test('network errors are retried: lost replies make no second order', async () => {
  const { wx, mp } = client('flaky');
  const createdBefore = await service.ordersCreated();
  // The login reply is lost (its code is spent), two order replies are lost after the server
  // stored the order, and an order read never leaves the phone.
  wx.failures.push(
    { mode: 'after', on: 'POST /v1/sessions' },
    { mode: 'after', on: 'POST /v1/orders' },
    { mode: 'after', on: 'POST /v1/orders' },
    { mode: 'before', on: 'GET /v1/orders/' }
  );

  const order = await mp.createOrder('sms-100', 3);
  const result = await mp.pay(order);
  assert.equal(result.status, 'paid');

  assert.equal(wx.logins, 2, 'the retried login took a fresh wx.login code');
  const posts = wx.requests.filter((r) => r.method === 'POST' && r.path === '/v1/orders');
  assert.deepEqual(posts.map((r) => r.status), [202, 202, 202], 'the order POST went out 3 times');
  const reads = wx.requests.filter((r) => r.method === 'GET');
  assert.equal(reads[0].status, null, 'the first read failed before it was sent');
  assert.equal((await service.ordersCreated()) - createdBefore, 1, 'exactly one order was created');
});

test('network down past the retry bound: rejects network, same key finds the order', async () => {
  const { wx, mp } = client('offline', { retries: 2 });
  await mp.login();
  const createdBefore = await service.ordersCreated();
  wx.failures.push(...Array(3).fill({ mode: 'after', on: 'POST /v1/orders' }));

  const error = await rejection(mp.createOrder('sms-100', 1), Kinds.NETWORK);
  assert.equal(error.errMsg, 'request:fail timeout');
  assert.ok(error.idempotencyKey, 'the key to retry the purchase with');

  const order = await mp.createOrder('sms-100', 1, { idempotencyKey: error.idempotencyKey });
  assert.equal((await service.ordersCreated()) - createdBefore, 1, 'the retry found the order');
  const again = await mp.createOrder('sms-100', 1, { idempotencyKey: error.idempotencyKey });
  assert.equal(again.out_trade_no, order.out_trade_no);
  assert.equal((await mp.pay(order)).status, 'paid');
});

test('a 503 from the service (WeChat login busy) is retried', async () => {
  const { wx, mp } = client('patient');
  wx.queuedCodes.push('busy#1');
  await mp.login();
  assert.deepEqual(
    wx.requests.map((r) => [r.path, r.status, r.code]),
    [
      ['/v1/sessions', 503, 'WECHAT_UNAVAILABLE'],
      ['/v1/sessions', 201, null],
    ]
  );
});

test('an error the contract calls final is not retried: unknown sku rejects http', async () => {
  const { wx, mp } = client('typo');
  await mp.login();
  const error = await rejection(mp.createOrder('no-such-sku', 1), Kinds.HTTP);
  assert.equal(error.status, 404);
  assert.equal(error.code, 'UNKNOWN_SKU');
  assert.equal(wx.requests.filter((r) => r.path === '/v1/orders').length, 1);
});

test('the payment sheet says ok but nothing is paid: pay rejects timeout, not paid', async () => {
  const { wx, mp } = client('optimist', { timeoutMs: 2000 });
  const order = await mp.createOrder('sms-100', 1);
  wx.payBehaviour = 'ok-without-paying';

  const started = Date.now();
  const error = await rejection(mp.pay(order), Kinds.TIMEOUT);
  assert.equal(error.order.status, 'ready');
  assert.ok(Date.now() - started < 6000, 'bounded by timeoutMs');
});

test('a wrong login code: WECHAT_LOGIN_FAILED, not retried', async () => {
  const { wx, mp } = client('stranger');
  wx.queuedCodes.push('invalid#1');
  const error = await rejection(mp.login(), Kinds.HTTP);
  assert.equal(error.status, 401);
  assert.equal(error.code, 'WECHAT_LOGIN_FAILED');
  assert.equal(wx.logins, 1);
});
