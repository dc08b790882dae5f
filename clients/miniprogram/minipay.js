/**
 * minipay client for WeChat mini-programs: login, place an order, pay it.
 *
 * Plain CommonJS at ES2017 level, no dependencies, no build step: copy this file into the
 * mini-program and `require` it. Every WeChat API it uses comes from the `wx` object you pass,
 * so the same code runs in Node against a stand-in (see `test/`).
 *
 * Outcomes: `pay()` resolves only when the server says the order is paid; every other ending
 * rejects with a {@link MinipayError} whose `kind` names it (see {@link Kinds}).
 */
'use strict';

/**
 * The ways a call can end without success; `MinipayError#kind` is one of these.
 * @readonly
 * @enum {string}
 */
const Kinds = Object.freeze({
  /** The user closed the payment sheet (`requestPayment:fail cancel`); the order stays payable. */
  CANCELLED: 'cancelled',
  /** WeChat refused the order for good; `code` and `wechatMessage` carry WeChat's reason. */
  FAILED: 'failed',
  /** The order expired unpaid and was closed; place a new one. */
  CLOSED: 'closed',
  /** The order did not reach the awaited status within `timeoutMs`; it may still get there. */
  TIMEOUT: 'timeout',
  /** `wx.requestPayment` failed for a reason other than a cancel; `errMsg` has WeChat's text. */
  PAYMENT: 'payment',
  /** The service could not be reached after every retry; `errMsg` has the last failure. */
  NETWORK: 'network',
  /** The service answered with an error; `status` and `code` are from the HTTP contract. */
  HTTP: 'http',
});

/** A failed call: `kind` says what happened, the other fields say more (when they apply). */
class MinipayError extends Error {
  /**
   * @param {string} kind one of {@link Kinds}
   * @param {string} message human text
   * @param {object} [details] `status`, `code`, `order`, `errMsg`, `wechatMessage`,
   *   `idempotencyKey`, `retryAfterMs`
   */
  constructor(kind, message, details) {
    super(message);
    this.name = 'MinipayError';
    /** @type {string} */
    this.kind = kind;
    const extra = details || {};
    /** HTTP status of the service's answer (`http`). */
    this.status = extra.status;
    /** The contract's error code (`http`), or WeChat's err_code (`failed`). */
    this.code = extra.code;
    /** The last order view seen (`cancelled`, `failed`, `closed`, `timeout`, `payment`). */
    this.order = extra.order;
    /** WeChat's `errMsg` (`cancelled`, `payment`, `network`). */
    this.errMsg = extra.errMsg;
    /** WeChat's err_code_des for a failed order (`failed`). */
    this.wechatMessage = extra.wechatMessage;
    /** The key `createOrder` used: pass it again to retry the same purchase. */
    this.idempotencyKey = extra.idempotencyKey;
    /**
     * How long the service asked the caller to wait (`Retry-After`, in ms), e.g. with `429`
     * `RATE_LIMITED` or `TOO_MANY_UNPAID_ORDERS`: what a page tells the user.
     */
    this.retryAfterMs = extra.retryAfterMs;
  }
}

const DEFAULTS = {
  pollSeconds: 25, // the server's long-poll bound is 30 s
  timeoutMs: 60000,
  retries: 4,
  retryDelayMs: 500,
  maxRetryDelayMs: 8000,
  maxRetryAfterMs: 30000,
  paidPollMs: 500,
  storageKey: 'minipay_session_token',
};

const RETRYABLE_STATUS = [429, 500, 502, 503, 504];
const PAID_STATUSES = ['paid', 'refunded'];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls a callback-style `wx` API as a promise that rejects with WeChat's `fail` object. */
function wxCall(wx, name, params) {
  return new Promise((resolve, reject) => {
    wx[name](Object.assign({}, params, { success: resolve, fail: reject }));
  });
}

/** `Retry-After` in milliseconds (delta-seconds or an HTTP date), or undefined. */
function retryAfterMs(headers) {
  // Header names arrive in whatever case the server (or a proxy) wrote them.
  const name = Object.keys(headers || {}).find((key) => key.toLowerCase() === 'retry-after');
  const value = name === undefined ? undefined : headers[name];
  if (value === undefined || value === null || value === '') return undefined;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function parseBody(data) {
  if (typeof data !== 'string') return data;
  try {
    return JSON.parse(data);
  } catch (e) {
    return data;
  }
}

function randomKey() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let key = 'mp-' + Date.now().toString(36) + '-';
  for (let i = 0; i < 16; i++) key += alphabet[Math.floor(Math.random() * alphabet.length)];
  return key;
}

/** The token store: the given one, else wx storage when the runtime has it, else memory. */
function tokenStorage(options) {
  if (options.storage) return options.storage;
  const wx = options.wx;
  if (typeof wx.getStorageSync === 'function' && typeof wx.setStorageSync === 'function') {
    return {
      get(key) {
        try {
          return wx.getStorageSync(key) || null;
        } catch (e) {
          return null;
        }
      },
      set(key, value) {
        try {
          wx.setStorageSync(key, value || '');
        } catch (e) {
          // Storage full or unavailable: the token still lives in memory for this run.
        }
      },
    };
  }
  const memory = {};
  return {
    get: (key) => memory[key] || null,
    set: (key, value) => {
      memory[key] = value;
    },
  };
}

class MinipayClient {
  constructor(options) {
    if (!options || !options.baseUrl || !options.wx) {
      throw new TypeError('createClient needs { baseUrl, wx }');
    }
    this.baseUrl = String(options.baseUrl).replace(/\/+$/, '');
    this.wx = options.wx;
    this.storage = tokenStorage(options);
    const pick = (name) => (options[name] === undefined ? DEFAULTS[name] : options[name]);
    this.pollSeconds = Math.max(1, Math.min(30, Math.floor(pick('pollSeconds'))));
    this.timeoutMs = pick('timeoutMs');
    this.retries = pick('retries');
    this.retryDelayMs = pick('retryDelayMs');
    this.maxRetryDelayMs = pick('maxRetryDelayMs');
    this.maxRetryAfterMs = pick('maxRetryAfterMs');
    this.paidPollMs = pick('paidPollMs');
    this.storageKey = pick('storageKey');
    this.token = this.storage.get(this.storageKey);
    this.loggingIn = null;
  }

  /**
   * Exchanges a fresh `wx.login` code for a session (`POST /v1/sessions`) and keeps its token.
   * Concurrent calls share one login.
   * @returns {Promise<{token: string, expires_in: number}>}
   * @throws {MinipayError} `network` or `http` (e.g. code `WECHAT_LOGIN_FAILED`)
   */
  login() {
    if (!this.loggingIn) {
      this.loggingIn = this._send(async () => {
        // A code is single-use: a retry after a lost reply needs a new one.
        const got = await wxCall(this.wx, 'login', {});
        return { method: 'POST', path: '/v1/sessions', data: { code: got.code } };
      }).then(
        (session) => {
          this.token = session.token;
          this.storage.set(this.storageKey, session.token);
          this.loggingIn = null;
          return session;
        },
        (error) => {
          this.loggingIn = null;
          throw error;
        }
      );
    }
    return this.loggingIn;
  }

  /**
   * Places an order (`POST /v1/orders`); the server prices it from its catalog. The request
   * carries an `Idempotency-Key`, so retries (this client's, or yours with the same key after a
   * rejection, even from a new session of the same user) never make a second order.
   * @param {string} sku a catalog sku
   * @param {number} quantity 1 or more
   * @param {{idempotencyKey?: string}} [options] reuse the key of a purchase that was cut off
   * @returns {Promise<{out_trade_no: string, status: string, total_fee: number}>}
   * @throws {MinipayError} `network` or `http` (e.g. `UNKNOWN_SKU`), with `idempotencyKey`
   */
  async createOrder(sku, quantity, options) {
    const key = (options && options.idempotencyKey) || randomKey();
    try {
      return await this._authed({
        method: 'POST',
        path: '/v1/orders',
        data: { sku, quantity },
        header: { 'Idempotency-Key': key },
      });
    } catch (error) {
      if (error instanceof MinipayError) error.idempotencyKey = key;
      throw error;
    }
  }

  /**
   * Reads an order (`GET /v1/orders/{out_trade_no}`).
   * @param {string} outTradeNo
   * @param {{wait?: number}} [options] long-poll up to `wait` seconds (0..30) while it is pending
   * @returns {Promise<object>} the order view of the HTTP contract
   */
  getOrder(outTradeNo, options) {
    const wait = Math.max(0, Math.min(30, Math.floor((options && options.wait) || 0)));
    const path = '/v1/orders/' + encodeURIComponent(outTradeNo) + (wait ? '?wait=' + wait : '');
    return this._authed({ method: 'GET', path, timeout: (wait + 15) * 1000 });
  }

  /**
   * Pays an order: long-polls until the server has the payment parameters, opens WeChat's
   * payment sheet (`wx.requestPayment`), then waits until the server has the payment (WeChat's
   * notify or order query) — the sheet's "ok" alone is not proof of payment.
   * Each wait is bounded by `timeoutMs`; the user's time in the sheet is not.
   * @param {{out_trade_no: string}|string} order what `createOrder` returned, or its number
   * @returns {Promise<{status: string, order: object}>} status `paid` (or `refunded`)
   * @throws {MinipayError} `cancelled`, `failed`, `closed`, `timeout`, `payment`, `network`, `http`
   */
  async pay(order) {
    const id = typeof order === 'string' ? order : order.out_trade_no;
    let current = await this._waitWhilePending(id);
    if (current.status === 'ready') {
      current = await this._openPaymentSheet(current);
      if (PAID_STATUSES.indexOf(current.status) < 0) current = await this._waitForPaid(id);
    }
    return settled(current);
  }

  /** Opens the payment sheet; answers the order as known after it closes. */
  async _openPaymentSheet(order) {
    try {
      await wxCall(this.wx, 'requestPayment', order.pay_params);
      return order;
    } catch (fail) {
      const errMsg = (fail && fail.errMsg) || String(fail);
      if (/cancel/i.test(errMsg)) {
        const message = 'the user cancelled the payment';
        throw new MinipayError(Kinds.CANCELLED, message, { order, errMsg });
      }
      // Some failures are reported after the money moved: ask the server before giving up.
      const now = await this.getOrder(order.out_trade_no);
      if (PAID_STATUSES.indexOf(now.status) >= 0) return now;
      throw new MinipayError(Kinds.PAYMENT, 'wx.requestPayment failed: ' + errMsg, {
        order: now,
        errMsg,
      });
    }
  }

  /** Long-polls while the order is `pending` (the server wakes the poll when it changes). */
  async _waitWhilePending(id) {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      const wait = Math.max(0, Math.min(this.pollSeconds, left));
      const order = await this.getOrder(id, { wait });
      if (order.status !== 'pending') return order;
      if (Date.now() >= deadline) throw timeout(order, 'the payment parameters');
    }
  }

  /** Polls (the server's long-poll covers `pending` only) until the order leaves `ready`. */
  async _waitForPaid(id) {
    const deadline = Date.now() + this.timeoutMs;
    let pause = this.paidPollMs;
    for (;;) {
      const order = await this.getOrder(id);
      if (order.status !== 'ready' && order.status !== 'pending') return order;
      if (Date.now() + pause > deadline) throw timeout(order, 'the payment');
      await sleep(pause);
      pause = Math.min(pause * 2, 4000);
    }
  }

  /** A request with the session token; on `SESSION_REQUIRED` logs in again once and retries. */
  async _authed(request) {
    let relogged = false;
    for (;;) {
      if (!this.token) await this.login();
      const token = this.token;
      const header = Object.assign({}, request.header, { Authorization: 'Bearer ' + token });
      try {
        return await this._send(async () => Object.assign({}, request, { header }));
      } catch (error) {
        const expired = error.kind === Kinds.HTTP && error.code === 'SESSION_REQUIRED';
        if (!expired || relogged) throw error;
        relogged = true;
        // Another call may have logged in meanwhile; only a still-current token is dropped.
        if (this.token === token) {
          this.token = null;
          await this.login();
        }
      }
    }
  }

  /**
   * One logical request, retried on network errors and on 429/5xx (honouring `Retry-After`)
   * up to `retries` times. `build` makes each attempt's request (so login gets a new code).
   */
  async _send(build) {
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        // wx.login failing (inside build) is a network failure too.
        response = await this._wxRequest(await build());
      } catch (fail) {
        const errMsg = (fail && fail.errMsg) || String(fail);
        if (attempt >= this.retries) {
          throw new MinipayError(Kinds.NETWORK, 'network error: ' + errMsg, { errMsg });
        }
        await sleep(this._backoff(attempt));
        continue;
      }
      const body = parseBody(response.data);
      if (response.statusCode >= 200 && response.statusCode < 300) return body;
      const error = httpError(response.statusCode, body, response.header);
      if (RETRYABLE_STATUS.indexOf(response.statusCode) < 0 || attempt >= this.retries) throw error;
      const asked = retryAfterMs(response.header);
      if (asked !== undefined && asked > this.maxRetryAfterMs) throw error;
      await sleep(asked !== undefined ? asked : this._backoff(attempt));
    }
  }

  _wxRequest(request) {
    return wxCall(this.wx, 'request', {
      url: this.baseUrl + request.path,
      method: request.method,
      data: request.data,
      header: Object.assign({ 'content-type': 'application/json' }, request.header),
      timeout: request.timeout || 15000,
      dataType: 'json',
    });
  }

  /** Exponential backoff with jitter (half to all of the step). */
  _backoff(attempt) {
    const step = Math.min(this.maxRetryDelayMs, this.retryDelayMs * Math.pow(2, attempt));
    return step / 2 + Math.random() * (step / 2);
  }
}

function httpError(status, body, headers) {
  const error = (body && body.error) || {};
  const code = error.code || 'HTTP_' + status;
  const retryAfter = retryAfterMs(headers);
  return new MinipayError(Kinds.HTTP, error.message || 'HTTP ' + status, {
    status,
    code,
    retryAfterMs: retryAfter,
  });
}

function timeout(order, what) {
  return new MinipayError(Kinds.TIMEOUT, 'timed out waiting for ' + what, { order });
}

/** Paid (or already refunded) is the result; failed and closed throw with their kinds. */
function settled(order) {
  if (PAID_STATUSES.indexOf(order.status) >= 0) return { status: order.status, order };
  if (order.status === 'failed') {
    const why = order.error || {};
    throw new MinipayError(Kinds.FAILED, 'WeChat refused the order: ' + (why.code || 'unknown'), {
      order,
      code: why.code,
      wechatMessage: why.message,
    });
  }
  if (order.status === 'closed') {
    throw new MinipayError(Kinds.CLOSED, 'the order expired unpaid', { order });
  }
  throw timeout(order, 'the payment');
}

/**
 * Makes a client.
 * @param {object} options
 * @param {string} options.baseUrl the service, e.g. `https://pay.example.com`
 * @param {object} options.wx the global `wx` (or a stand-in with `request`, `login`,
 *   `requestPayment`)
 * @param {{get: function(string): ?string, set: function(string, ?string)}} [options.storage]
 *   where the session token lives (default: `wx.getStorageSync`/`setStorageSync`, else memory)
 * @param {number} [options.pollSeconds=25] long-poll length per request (1..30)
 * @param {number} [options.timeoutMs=60000] bound on each wait in `pay()`
 * @param {number} [options.retries=4] retries after a network error, 429 or 5xx
 * @param {number} [options.retryDelayMs=500] first backoff step (doubling, jittered)
 * @param {number} [options.maxRetryDelayMs=8000] largest backoff step
 * @param {number} [options.maxRetryAfterMs=30000] a longer `Retry-After` is not waited out: the
 *   call rejects `http` (`RATE_LIMITED`) so the page can tell the user
 * @param {number} [options.paidPollMs=500] first pause between reads while waiting for `paid`
 * @param {string} [options.storageKey='minipay_session_token'] the token's storage key
 * @returns {MinipayClient}
 */
function createClient(options) {
  return new MinipayClient(options);
}

module.exports = { createClient, MinipayError, Kinds };
