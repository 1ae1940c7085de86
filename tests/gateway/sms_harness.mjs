// Harness of the SMS gateway tests: a real SMSC (the npm `smpp` package's server side) on a
// random loopback port, and the adapter under test run by tests/gateway/sms_driver.c, whose
// stdin takes commands and whose stdout reports what the adapter asked of the gateway core.
// Each test (sms_test_*.sh -> sms_it.mjs SCENARIO) drives both. Every wait is bounded.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { writeFileSync, mkdirSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const SRC = process.env.M5_SRC;
const require = createRequire(join(SRC, 'tests/schema/package.json'));
export const smpp = require('smpp');
// Keep short_message / message_payload as the octets on the wire: the tests check encodings.
smpp.filters.message.decode = (v) => v;

export const log = (...a) => console.log('[sms-it]', ...a);

export function waitFor(what, pred, ms = 15000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let v;
      try { v = pred(); } catch (e) { return reject(e); }
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

// ---- the SMSC ----
export class Smsc {
  constructor() {
    this.binds = [];      // bind_transceiver PDUs, with .at (ms)
    this.submits = [];    // submit_sm PDUs
    this.rx = [];         // every PDU received, in order
    this.session = null;
    this.sessions = 0;
    this.mode = { bind: 'ok', submit: 'ok', silent: false };
    this.submitStatus = [];  // statuses to answer the next submit_sm with, then 0
    this.holdSubmits = false;
    this.held = [];
    this.nextId = 1;
    this.server = smpp.createServer((s) => this.onSession(s));
  }
  listen() {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => {
      this.port = this.server.address().port;
      r(this.port);
    }));
  }
  onSession(s) {
    this.sessions++;
    this.session = s;
    s.on('error', () => {});
    s.on('pdu', (pdu) => {
      pdu.at = Date.now();
      this.rx.push(pdu);
      if (this.mode.silent) return;
      if (pdu.command === 'bind_transceiver') {
        this.binds.push(pdu);
        if (this.mode.bind === 'refuse' || (typeof this.mode.bind === 'number' && this.mode.bind-- > 0)) {
          s.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
        } else {
          s.send(pdu.response({ system_id: 'testsmsc' }));
        }
      } else if (pdu.command === 'submit_sm') {
        this.submits.push(pdu);
        const st = this.submitStatus.length ? this.submitStatus.shift() : 0;
        const r = st ? pdu.response({ command_status: st })
                     : pdu.response({ message_id: `m${this.nextId++}` });
        pdu.smsc_id = r.message_id;
        if (this.holdSubmits) this.held.push(() => s.send(r));
        else s.send(r);
      } else if (pdu.command === 'enquire_link') {
        s.send(pdu.response());
      } else if (pdu.command === 'unbind') {
        s.send(pdu.response());
      }
    });
  }
  releaseSubmits(n = Infinity) {
    while (n-- > 0 && this.held.length) this.held.shift()();
  }
  // Sends a request and resolves with its response PDU (or rejects after ms).
  request(command, opts, ms = 15000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no response to ${command}`)), ms);
      this.session.send(new smpp.PDU(command, opts), (r) => { clearTimeout(t); resolve(r); });
    });
  }
  // Sends a request without waiting; returns its PDU (sequence_number set once sent).
  send(command, opts, ms = 20000) {
    const pdu = new smpp.PDU(command, opts);
    const p = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no response to ${command}`)), ms);
      t.unref();
      this.session.send(pdu, (r) => { clearTimeout(t); resolve(r); });
    });
    p.catch(() => {}); // a test that drops the session on purpose never awaits it
    return { pdu, resp: p };
  }
  raw(buf) { this.session.socket.write(buf); }
  drop() { this.session.socket.destroy(); }
  close() { return new Promise((r) => { try { this.server.close(() => r()); } catch { r(); } for (const c of this._all || []) c.destroy(); }); }
}

export function mo(opts) {
  // A mobile-originated deliver_sm as an SMSC sends it.
  return Object.assign({
    service_type: '', source_addr_ton: 1, source_addr_npi: 1, dest_addr_ton: 1, dest_addr_npi: 1,
    esm_class: 0, protocol_id: 0, priority_flag: 0, schedule_delivery_time: '',
    validity_period: '', registered_delivery: 0, replace_if_present_flag: 0, data_coding: 0,
    sm_default_msg_id: 0,
  }, opts);
}

// ---- the driver ----
export class Driver {
  constructor(tmp, cfg) {
    this.tmp = tmp;
    mkdirSync(tmp, { recursive: true });
    this.cfgPath = join(tmp, 'gw-sms.yaml');
    writeFileSync(this.cfgPath, cfg);
    this.lines = [];
    this.stderr = '';
    this.exited = null;
  }
  start(args = []) {
    const bin = join(process.env.M5_BIN, 'm5gw_sms_driver');
    this.p = spawn(bin, [this.cfgPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const errlog = createWriteStream(join(this.tmp, 'driver.log'));
    let buf = '';
    this.p.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(l);
      }
    });
    this.p.stderr.on('data', (d) => { this.stderr += d.toString(); errlog.write(d); });
    this.p.on('exit', (code, sig) => { this.exited = { code, sig }; });
    return waitFor('driver READY', () => this.lines.includes('READY') || this.exited);
  }
  cmd(l) { this.p.stdin.write(l + '\n'); }
  // A command that changes how the driver answers (e.g. 'uplink accept'): the driver reads
  // stdin and the SMSC socket apart, so wait until it has taken the command before the next PDU.
  async set(l) { this.cmd(l); await this.ping(); }
  find(prefix, from = 0) { return this.lines.slice(from).find((l) => l.startsWith(prefix)); }
  all(prefix) { return this.lines.filter((l) => l.startsWith(prefix)); }
  wait(prefix, ms) { return waitFor(`driver line "${prefix}"`, () => this.find(prefix), ms); }
  async ping() {
    const n = this.all('PONG').length;
    this.cmd('ping');
    await waitFor('PONG', () => this.all('PONG').length > n);
  }
  async stop() {
    if (this.exited) return this.exited;
    this.cmd('quit');
    this.p.stdin.end();
    await waitFor('driver exit', () => this.exited, 20000);
    return this.exited;
  }
}

// The adapter's configuration; extra lines ("  key: value") replace or add keys.
export function config(port, extra = '', devices = ['+491700000001=sms1', '491700000002=sms2']) {
  const keys = new Map(Object.entries({
    host: '127.0.0.1', port: String(port), system_id: 'gw1', password: 's3cr3tpw',
    response_timeout_ms: '1500', enquire_link_ms: '30000', reconnect_min_ms: '100',
    reconnect_max_ms: '800', throttle_retry_ms: '200', reassembly_timeout_ms: '1500',
  }));
  for (const l of extra.split('\n')) {
    const m = /^\s*(\w+):\s*(.*)$/.exec(l);
    if (m) keys.set(m[1], m[2]);
  }
  const routes = keys.has('routes') ? '' : `  routes:
    - "1000=AS:as1"
    - "2000=UE:ue1"
`;
  let y = 'sms:\n';
  for (const [k, v] of keys) y += `  ${k}: ${v}\n`;
  return y + `  devices:
${devices.map((d) => `    - "${d}"`).join('\n')}
` + routes;
}

// Sets up an SMSC and a bound driver; returns both and a teardown that checks the driver
// exited cleanly (0, no sanitizer report).
export async function setup(name, extra = '', { devices, args } = {}) {
  const smsc = new Smsc();
  const port = await smsc.listen();
  const drv = new Driver(join(process.env.M5_TMP, name), config(port, extra, devices));
  await drv.start(args);
  assert.ok(!drv.exited, `driver exited at start: ${drv.stderr}`);
  await waitFor('bound', () => /bound to SMSC/.test(drv.stderr));
  const teardown = async () => {
    const ex = await drv.stop();
    smsc.server.close();
    if (smsc.session) smsc.session.destroy();
    assert.equal(ex.code, 0, `driver exit ${JSON.stringify(ex)}; stderr tail:\n${drv.stderr.slice(-3000)}`);
    assert.ok(!/ERROR: AddressSanitizer|runtime error:|LeakSanitizer/.test(drv.stderr),
      `sanitizer report:\n${drv.stderr.slice(-4000)}`);
  };
  return { smsc, drv, teardown };
}

// Everything the SMSC sent before this is processed by the adapter, and everything the
// adapter reported about it is on the driver's stdout: an enquire_link round trip, then a
// driver command round trip.
export async function sync(smsc, drv) {
  await smsc.request('enquire_link', {});
  await drv.ping();
}

export const hex = (b) => Buffer.from(b).toString('hex');
export const utf8hex = (s) => Buffer.from(s, 'utf8').toString('hex');
