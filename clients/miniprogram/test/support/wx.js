// A stand-in for the mini-program's `wx`: `request` over Node's fetch, `login` handing out the
// simulator's codes (`<user>#<n>`: the part before `#` names the user), and `requestPayment`
// checking paySign the way WeChat does, then paying through the simulator's control API.
'use strict';

const crypto = require('node:crypto');

// Simulator mode's fixed identity (src/wechat/simulator/mod.rs, `SimConfig::demo`).
const APPID = 'wxd930ea5d5a258f4f';
const API_KEY = '192006250b4c09247ec02edce69f6a2d';

/** The paySign WeChat expects for `wx.requestPayment` parameters (appId comes from the runtime). */
function paySign(params) {
  const { nonceStr, package: pkg, signType, timeStamp } = params;
  const fields = { appId: APPID, nonceStr, package: pkg, signType, timeStamp };
  const pairs = Object.keys(fields).sort().map((k) => `${k}=${fields[k]}`);
  const text = `${pairs.join('&')}&key=${API_KEY}`;
  const digest =
    params.signType === 'HMAC-SHA256'
      ? crypto.createHmac('sha256', API_KEY).update(text).digest('hex')
      : crypto.createHash('md5').update(text).digest('hex');
  return digest.toUpperCase();
}

/**
 * @param {object} service what `startService` returned
 * @param {string} user the simulated WeChat user
 */
function createWx(service, user) {
  let codes = 0;
  // The payment sheet finds its order by prepay_id, as WeChat does; the stand-in learns the
  // mapping from the order views it carries.
  const orderByPackage = new Map();
  const wx = {
    /** Every request: { method, path, status, code } (status `null`: network failure). */
    requests: [],
    /** Every `requestPayment` argument. */
    payments: [],
    logins: 0,
    storage: new Map(),
    /** Next login codes to hand out before the normal ones (e.g. `busy#1`). */
    queuedCodes: [],
    /** `pay` (default), `cancel`, or `ok-without-paying` (the sheet says ok, nothing is paid). */
    payBehaviour: 'pay',
    /**
     * Failures to inject: `{ mode, on }` fails the next request whose `METHOD /path` starts with
     * `on`, `before` it is sent or `after` the server handled it (the reply is lost).
     */
    failures: [],

    request(options) {
      const url = new URL(options.url);
      const path = url.pathname + url.search;
      const record = { method: options.method, path, status: null, code: null };
      wx.requests.push(record);
      const line = `${options.method} ${url.pathname}`;
      const index = wx.failures.findIndex((f) => line.startsWith(f.on));
      const failure = index < 0 ? null : wx.failures.splice(index, 1)[0].mode;
      if (failure === 'before') {
        setImmediate(() => options.fail({ errMsg: 'request:fail net::ERR_CONNECTION_RESET' }));
        return;
      }
      const body = options.data === undefined ? undefined : JSON.stringify(options.data);
      fetch(options.url, {
        method: options.method,
        headers: options.header,
        body,
        signal: AbortSignal.timeout(options.timeout || 60000),
      })
        .then(async (response) => {
          const text = await response.text();
          let data = text;
          try {
            data = JSON.parse(text);
          } catch {
            // Not JSON: wx hands the string over as it is.
          }
          record.status = response.status;
          record.code = data && data.error ? data.error.code : null;
          if (data?.pay_params) orderByPackage.set(data.pay_params.package, data.out_trade_no);
          if (failure === 'after') {
            options.fail({ errMsg: 'request:fail timeout' });
            return;
          }
          const header = Object.fromEntries(response.headers);
          options.success({ statusCode: response.status, data, header });
        })
        .catch((error) => options.fail({ errMsg: `request:fail ${error.message}` }));
    },

    login(options) {
      wx.logins += 1;
      const code = wx.queuedCodes.length ? wx.queuedCodes.shift() : `${user}#${++codes}`;
      setImmediate(() => options.success({ code, errMsg: 'login:ok' }));
    },

    requestPayment(options) {
      const params = { ...options };
      delete params.success;
      delete params.fail;
      wx.payments.push(params);
      const finish = async () => {
        const fail = (why) => options.fail({ errMsg: `requestPayment:fail ${why}` });
        if (params.paySign !== paySign(params)) return fail('invalid paySign');
        if (wx.payBehaviour === 'cancel') return fail('cancel');
        if (wx.payBehaviour === 'pay') {
          const outTradeNo = orderByPackage.get(params.package);
          if (!outTradeNo) return fail('unknown prepay_id');
          await service.sim('pay', { out_trade_no: outTradeNo });
        }
        return options.success({ errMsg: 'requestPayment:ok' });
      };
      finish().catch((error) => options.fail({ errMsg: `requestPayment:fail ${error.message}` }));
    },

    getStorageSync(key) {
      return wx.storage.has(key) ? wx.storage.get(key) : '';
    },
    setStorageSync(key, value) {
      wx.storage.set(key, value);
    },
  };
  return wx;
}

module.exports = { createWx, APPID };
