// The SMSC of the SMS gateway's end-to-end tests (tests/gateway/e2e_sms_*.sh): the npm `smpp`
// package's server side (through tests/gateway/sms_harness.mjs), driven by one command per
// line on stdin and reporting on stdout, so that a shell test can play the SMSC around the
// real m5s, m5gw, m5c and AS.
//
// stdout (one line each):
//   PORT <n>                       first, once listening on 127.0.0.1:<n>
//   BIND <session> <system_id>     a bind_transceiver, answered as the mode says
//   CLOSE <session>                the gateway's connection closed
//   SUBMIT <json>                  a submit_sm (also appended to SUBMITS_FILE as one JSON line):
//        {session, seq, source_addr, source_addr_ton, source_addr_npi, destination_addr,
//         dest_addr_ton, dest_addr_npi, esm_class, registered_delivery, data_coding,
//         udh (hex, "" without UDHI), sm (the short_message after the UDH, hex), text (sm
//         decoded: data_coding 0 as unpacked GSM 03.38, 8 as UCS-2, else null),
//         status (answered with; null while held or dropped), smsc_id}
//   MORESP <tag> <command_status>  the gateway answered the deliver_sm sent by `mo <tag>`
//   RECEIPT <smsc_id> <command_status>  the gateway answered a delivery receipt
//   PONG                           answer to `ping` (everything before it was done)
//   ERROR <text>
// stdin:
//   mo TAG FROM TO DC HEX [KEY=VALUE...]  a mobile-originated deliver_sm (short_message = the
//        octets HEX, UDH included; KEY one of esm_class, registered_delivery, data_coding,
//        or sar_msg_ref_num / sar_total_segments / sar_segment_seqnum), on the current session
//   redeliver                      sends again, on the current session, every deliver_sm not
//        answered yet (as an SMSC does after a new bind); their tags get the suffix "+"
//   status S...                    the next submit_sm are answered with these command_status
//                                  values, in order (then 0 again); e.g. status 0x58 0x58
//   receipts STAT [ERR]            a submit_sm with registered_delivery 1 answered OK gets a
//        delivery receipt (SMPP 3.4 Appendix B text, stat:STAT err:ERR) once answered;
//        `receipts off` (the default) sends none
//   hold on|off                    holds the submit_sm_resp (and receipt) of what comes (on) /
//                                  sends them (off)
//   drop                           closes the current session (what is held is never answered)
//   drop-at-submit                 the next submit_sm is not answered: the session is closed
//   bind ok|refuse                 how a bind_transceiver is answered
//   ping | quit
//   node e2e_sms_smsc.mjs SUBMITS_FILE
import { appendFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Smsc, smpp, mo } from './sms_harness.mjs';

const [submitsFile] = process.argv.slice(2);
writeFileSync(submitsFile, '');
const out = (l) => process.stdout.write(l + '\n');

// GSM 03.38 default alphabet (unpacked septets) and its extension table, for `text`.
const GSM = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = { 0x0a: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2f: '\\', 0x3c: '[', 0x3d: '~',
  0x3e: ']', 0x40: '|', 0x65: '€' };
function decode(dc, b) {
  if (dc === 8) return Buffer.from(b).swap16().toString('utf16le');
  if (dc !== 0) return null;
  let s = '';
  for (let i = 0; i < b.length; i++) {
    if (b[i] > 0x7f) return null;
    if (b[i] === 0x1b && i + 1 < b.length) s += GSM_EXT[b[++i]] ?? '?';
    else s += GSM[b[i]];
  }
  return s;
}

class E2eSmsc extends Smsc {
  constructor() {
    super();
    this.receipts = null; // { stat, err }
    this.dropAtSubmit = false;
    this.pendingMo = new Map(); // tag -> deliver_sm options, until answered
  }
  onSession(s) {
    // before the harness's handler: a submit_sm to drop on is held, not answered
    const n = this.sessions + 1;
    s.on('pdu', (pdu) => {
      if (pdu.command === 'submit_sm' && this.dropAtSubmit) this.holdSubmits = true;
    });
    super.onSession(s);
    s.on('close', () => out(`CLOSE ${n}`));
    s.on('pdu', (pdu) => this.after(s, n, pdu));
  }
  after(s, n, pdu) {
    if (pdu.command === 'bind_transceiver') {
      out(`BIND ${n} ${pdu.system_id}`);
      return;
    }
    if (pdu.command !== 'submit_sm') return;
    const raw = Buffer.from(pdu.short_message.message ?? pdu.short_message);
    const hl = pdu.esm_class & 0x40 ? raw[0] + 1 : 0;
    const sm = raw.subarray(hl);
    const held = this.holdSubmits;
    const rec = {
      session: n, seq: pdu.sequence_number, source_addr: pdu.source_addr,
      source_addr_ton: pdu.source_addr_ton, source_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.destination_addr, dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi, esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery, data_coding: pdu.data_coding,
      udh: raw.subarray(0, hl).toString('hex'), sm: sm.toString('hex'),
      text: decode(pdu.data_coding, sm), status: null, smsc_id: pdu.smsc_id ?? null,
    };
    if (this.dropAtSubmit) {
      this.dropAtSubmit = false;
      this.holdSubmits = false;
      this.held = [];
      appendFileSync(submitsFile, JSON.stringify(rec) + '\n');
      out(`SUBMIT ${JSON.stringify(rec)}`);
      s.socket.destroy();
      return;
    }
    // the harness answered already unless held: with submitStatus's value or OK
    rec.status = held ? null : (pdu.smsc_id ? 0 : this.lastStatus);
    appendFileSync(submitsFile, JSON.stringify(rec) + '\n');
    out(`SUBMIT ${JSON.stringify(rec)}`);
    const receipt = () => this.receipt(s, pdu, sm);
    if (!held) receipt();
    else if (this.held.length) { // sent when released, after the response
      const respond = this.held.pop();
      this.held.push(() => { respond(); receipt(); });
    }
  }
  receipt(s, pdu, sm) {
    if (!pdu.smsc_id || !(pdu.registered_delivery & 1) || !this.receipts) return;
    const { stat, err } = this.receipts;
    const text = `id:${pdu.smsc_id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} ` +
      `submit date:2612072100 done date:2612072100 stat:${stat} err:${err} ` +
      `text:${sm.subarray(0, 20).toString('latin1')}`;
    const id = pdu.smsc_id;
    s.send(new smpp.PDU('deliver_sm', mo({ source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr, esm_class: 0x04,
      short_message: Buffer.from(text, 'latin1') })), (r) => out(`RECEIPT ${id} ${r.command_status}`));
  }
}

const smsc = new E2eSmsc();
// what the harness answered a submit_sm with (its submitStatus queue is shifted as it answers)
const shift = Array.prototype.shift;
smsc.submitStatus.shift = function () {
  const v = shift.call(this);
  smsc.lastStatus = v ?? 0;
  return v;
};
const port = await smsc.listen();
out(`PORT ${port}`);

function sendMo(tag, opts) {
  if (!smsc.session || smsc.session.socket.destroyed) return out(`ERROR ${tag}: no session`);
  smsc.pendingMo.set(tag, opts);
  const pdu = new smpp.PDU('deliver_sm', mo(opts));
  smsc.session.send(pdu, (r) => {
    smsc.pendingMo.delete(tag);
    out(`MORESP ${tag} ${r.command_status}`);
  });
}

const num = (v) => (/^0x/i.test(v) ? parseInt(v, 16) : Number(v));
createInterface({ input: process.stdin }).on('line', (line) => {
  const w = line.trim().split(/\s+/);
  try {
    switch (w[0]) {
      case 'mo': {
        const [, tag, from, to, dc, hex, ...kv] = w;
        const opts = { source_addr: from, destination_addr: to, data_coding: num(dc),
          short_message: Buffer.from(hex, 'hex') };
        for (const p of kv) {
          const [k, v] = p.split('=');
          opts[k] = num(v);
        }
        sendMo(tag, opts);
        break;
      }
      case 'redeliver':
        for (const [tag, opts] of [...smsc.pendingMo]) {
          smsc.pendingMo.delete(tag);
          sendMo(`${tag}+`, opts);
        }
        break;
      case 'status': smsc.submitStatus.push(...w.slice(1).map(num)); break;
      case 'receipts': smsc.receipts = w[1] === 'off' ? null : { stat: w[1], err: w[2] ?? '000' }; break;
      case 'hold':
        smsc.holdSubmits = w[1] === 'on';
        if (!smsc.holdSubmits) smsc.releaseSubmits();
        break;
      case 'drop': smsc.drop(); break;
      case 'drop-at-submit': smsc.dropAtSubmit = true; break;
      case 'bind': smsc.mode.bind = w[1]; break;
      case 'ping': out('PONG'); break;
      case 'quit': process.exit(0); break;
      case undefined: break;
      default: out(`ERROR unknown command ${w[0]}`);
    }
  } catch (e) {
    out(`ERROR ${e.message}`);
  }
});
process.stdin.on('end', () => process.exit(0));
