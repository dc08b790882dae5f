// Starts the real `minipay` binary in simulator mode on a free port with a fresh SQLite file,
// and talks to its admin, metrics and simulator-control endpoints.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO = path.resolve(__dirname, '..', '..', '..', '..');
const ADMIN_TOKEN = 'js-client-tests-admin-token';

/** The binary `make test-js` built: $MINIPAY_BIN, else the cargo target dir's debug build. */
function binary() {
  const candidates = [
    process.env.MINIPAY_BIN,
    process.env.CARGO_TARGET_DIR && path.join(process.env.CARGO_TARGET_DIR, 'debug', 'minipay'),
    path.join(REPO, 'target', 'debug', 'minipay'),
  ].filter(Boolean);
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) {
    throw new Error(
      `no minipay binary at ${candidates.join(' or ')}: run \`cargo build --bin minipay\` ` +
        '(or `make test-js`, which builds it first)'
    );
  }
  return found;
}

/**
 * Runs `minipay all` until `stop()`. `env` adds settings (e.g. MINIPAY_SESSION_TTL_SECS).
 *
 * Rate limits are off (`0`) unless a test asks for them in `env`: the suite logs every user in
 * from one IP and polls as fast as the helper lets it, which is not what it tests (except
 * rate-limits.test.js, which sets low limits on purpose).
 */
async function startService(env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minipay-js-'));
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('MINIPAY_'))
  );
  const child = spawn(binary(), ['all'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...inherited,
      MINIPAY_DATABASE_URL: `sqlite://${path.join(dir, 'minipay.db')}`,
      MINIPAY_LISTEN: '127.0.0.1:0',
      MINIPAY_LOG_FORMAT: 'json',
      MINIPAY_ADMIN_TOKEN: ADMIN_TOKEN,
      // No background order queries during a test: a forced simulator outcome for "*" must
      // reach the unifiedorder call it is meant for.
      MINIPAY_RECONCILE_DELAY_SECS: '3600',
      MINIPAY_LIMIT_LOGINS_PER_IP: '0',
      MINIPAY_LIMIT_ORDERS_PER_USER: '0',
      MINIPAY_LIMIT_UNPAID_PER_USER: '0',
      MINIPAY_LIMIT_READS_PER_USER: '0',
      // ordersCreated() reads a counter right after the change: no cached /metrics answer.
      MINIPAY_METRICS_CACHE_MS: '0',
      ...env,
    },
  });
  // Should the test process end without stop() (a crash, a failed hook), take the service too.
  const orphanGuard = () => {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', orphanGuard);
  const logs = [];
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve({ code })));
  const listening = new Promise((resolve, reject) => {
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        if (logs.length > 200) logs.shift();
        try {
          const fields = JSON.parse(line).fields || {};
          if (fields.message === 'minipay listening') resolve(fields.addr);
        } catch {
          // Not a JSON log line (e.g. a configuration error on stderr).
        }
      });
    }
    exited.then(({ code }) => reject(new Error(`minipay exited (${code}):\n${logs.join('\n')}`)));
    const late = () => reject(new Error(`minipay did not start:\n${logs.join('\n')}`));
    setTimeout(late, 30000).unref();
  });
  let addr;
  try {
    addr = await listening;
  } catch (error) {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const base = `http://${addr}`;
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    if (i > 100) throw new Error(`/readyz never answered 200:\n${logs.join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    base,
    logs,
    /** `POST /simulator/sim/{what}` with a JSON body; throws unless 2xx. */
    async sim(what, body) {
      const response = await fetch(`${base}/simulator/sim/${what}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(`sim/${what}: ${response.status} ${await response.text()}`);
      return response.status === 204 ? null : response.json();
    },
    /** The admin view of an order (with `openid` and its history). */
    async adminOrder(outTradeNo) {
      const response = await fetch(`${base}/v1/admin/orders/${outTradeNo}`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      if (!response.ok) throw new Error(`admin order: ${response.status} ${await response.text()}`);
      return response.json();
    },
    /** Orders this service has created so far (the `minipay_orders_created_total` counter). */
    async ordersCreated() {
      const text = await (await fetch(`${base}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('minipay_orders_created_total '));
      return line ? Number(line.split(' ')[1]) : 0;
    },
    /** SIGTERM, a clean exit within 15 s (else SIGKILL), then the temp dir goes. */
    async stop() {
      process.removeListener('exit', orphanGuard);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startService };
