// 429 handling with a scripted `wx` (no service): the contract answers a rate-limited request
// with `429`, `Retry-After` and code `RATE_LIMITED`; the client waits as told, within a bound.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { createClient, Kinds } = require('../minipay.js');

/** A `wx` whose requests get `answers` in turn: { status, body, header }. */
function scriptedWx(answers) {
  const wx = {
    sent: [],
    request(options) {
      wx.sent.push({ at: Date.now(), header: options.header, url: options.url });
      const answer = answers.shift();
      setImmediate(() =>
        options.success({ statusCode: answer.status, data: answer.body, header: answer.header })
      );
    },
    login(options) {
      setImmediate(() => options.success({ code: 'user#1' }));
    },
  };
  return wx;
}

const LIMITED = { code: 'RATE_LIMITED', message: 'slow down' };

test('429 with Retry-After: waits that long, retries with the same Idempotency-Key', async () => {
  const wx = scriptedWx([
    { status: 429, body: { error: LIMITED }, header: { 'Retry-After': '1' } },
    { status: 202, body: { out_trade_no: 'MP1', status: 'pending', total_fee: 88 }, header: {} },
  ]);
  const storage = { get: () => 'a-token', set: () => {} };
  const mp = createClient({ baseUrl: 'http://minipay.test', wx, storage, retryDelayMs: 10 });

  const order = await mp.createOrder('sms-100', 1);
  assert.equal(order.out_trade_no, 'MP1');
  assert.equal(wx.sent.length, 2);
  const gap = wx.sent[1].at - wx.sent[0].at;
  assert.ok(gap >= 950, `retried after ${gap} ms`);
  assert.equal(wx.sent[0].header['Idempotency-Key'], wx.sent[1].header['Idempotency-Key']);
  assert.equal(wx.sent[1].header.Authorization, 'Bearer a-token');
});

test('429 asking for longer than maxRetryAfterMs: rejects http RATE_LIMITED at once', async () => {
  const wx = scriptedWx([
    { status: 429, body: { error: LIMITED }, header: { 'retry-after': '120' } },
  ]);
  const storage = { get: () => 'a-token', set: () => {} };
  const mp = createClient({ baseUrl: 'http://minipay.test', wx, storage, maxRetryAfterMs: 5000 });

  const error = await mp.createOrder('sms-100', 1).then(assert.fail, (e) => e);
  assert.equal(error.kind, Kinds.HTTP);
  assert.equal(error.status, 429);
  assert.equal(error.code, 'RATE_LIMITED');
  assert.ok(error.idempotencyKey);
  assert.equal(wx.sent.length, 1);
});
