// A demo SMSC for trying the SMS gateway by hand (docs/gateways-sms.md): the npm `smpp`
// package's server side on 127.0.0.1. It accepts any bind_transceiver, prints every
// submit_sm it gets (decoded), answers it OK, and when a delivery receipt was asked for sends
// one back a moment later. Lines typed on stdin become mobile-originated SMS:
//   mo FROM TO TEXT...     e.g.  mo 491700000001 1000 hello from the field
//   quit
// Usage: node tests/gateway/sms_smsc_demo.mjs [PORT]   (default 2775)
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '../schema/package.json'));
const smpp = require('smpp');
smpp.filters.message.decode = (v) => v; // the octets as sent

// GSM 03.38: the ASCII characters whose septet differs, and the extension table.
const GSM_DIFF = { '@': 0x00, '$': 0x02, '_': 0x11 };
const GSM_EXT = { '\f': 0x0a, '^': 0x14, '{': 0x28, '}': 0x29, '\\': 0x2f, '[': 0x3c, '~': 0x3d,
  ']': 0x3e, '|': 0x40, '€': 0x65 };
const GSM_BACK = Object.fromEntries(Object.entries(GSM_DIFF).map(([k, v]) => [v, k]));
const EXT_BACK = Object.fromEntries(Object.entries(GSM_EXT).map(([k, v]) => [v, k]));

function toGsm(text) {
  const out = [];
  for (const ch of text) {
    if (ch in GSM_DIFF) out.push(GSM_DIFF[ch]);
    else if (ch in GSM_EXT) out.push(0x1b, GSM_EXT[ch]);
    else if (/^[A-Za-z0-9 !"#%&'()*+,\-./:;<=>?\n\r]$/.test(ch)) out.push(ch.charCodeAt(0));
    else return null;
  }
  return Buffer.from(out);
}

function show(dc, b) {
  if (dc === 8) return Buffer.from(b).swap16().toString('utf16le');
  if (dc === 0) {
    let s = '';
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0x1b && i + 1 < b.length) s += EXT_BACK[b[++i]] ?? '?';
      else s += GSM_BACK[b[i]] ?? (b[i] >= 0x20 || b[i] === 10 || b[i] === 13 ? String.fromCharCode(b[i]) : '?');
    }
    return s;
  }
  return `<${b.length} octets: ${b.toString('hex')}>`;
}

let session = null, nextId = 1;
const server = smpp.createServer((s) => {
  session = s;
  s.on('error', () => {});
  s.on('bind_transceiver', (pdu) => {
    console.log(`bind_transceiver system_id=${pdu.system_id}`);
    s.send(pdu.response({ system_id: 'demosmsc' }));
  });
  s.on('enquire_link', (pdu) => s.send(pdu.response()));
  s.on('unbind', (pdu) => s.send(pdu.response()));
  s.on('submit_sm', (pdu) => {
    const id = `demo${nextId++}`;
    let sm = pdu.short_message, udh = '';
    if (pdu.esm_class & 0x40) {
      udh = ` udh=${sm.subarray(0, sm[0] + 1).toString('hex')}`;
      sm = sm.subarray(sm[0] + 1);
    }
    console.log(`submit_sm ${pdu.source_addr} -> ${pdu.destination_addr} data_coding=${pdu.data_coding} ` +
      `esm_class=0x${pdu.esm_class.toString(16)}${udh} id=${id}: ${show(pdu.data_coding, sm)}`);
    s.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 1) {
      setTimeout(() => s.deliver_sm({
        source_addr: pdu.destination_addr, destination_addr: pdu.source_addr, esm_class: 0x04,
        data_coding: 0, short_message: Buffer.from(`id:${id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:`),
      }, () => console.log(`receipt for ${id} sent`)), 300);
    }
  });
  s.on('close', () => console.log('gateway disconnected'));
});
const port = Number(process.argv[2] || 2775);
server.listen(port, '127.0.0.1', () => console.log(`demo SMSC on 127.0.0.1:${port}`));

createInterface({ input: process.stdin }).on('line', (l) => {
  const m = /^mo\s+(\S+)\s+(\S+)\s+(.*)$/.exec(l.trim());
  if (l.trim() === 'quit') process.exit(0);
  if (!m) return console.log('usage: mo FROM TO TEXT | quit');
  if (!session) return console.log('no gateway bound yet');
  const gsm = toGsm(m[3]);
  const body = gsm ?? Buffer.from(m[3], 'utf16le').swap16();
  session.deliver_sm({ source_addr: m[1], destination_addr: m[2], data_coding: gsm ? 0 : 8,
    short_message: body }, (r) => console.log(`deliver_sm_resp command_status=0x${r.command_status.toString(16)}`));
});
