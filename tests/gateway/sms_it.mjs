// SMS gateway integration scenarios (run by tests/gateway/sms_test_*.sh): the adapter
// (m5gw_sms_adapter in tests/gateway/sms_driver.c) against the npm `smpp` package's SMSC.
//   node sms_it.mjs uplink|downlink|link|throttle|malformed|concat_missing|register|bounds|config
import assert from 'node:assert/strict';
import { setup, sync, mo, waitFor, log, smpp, hex, utf8hex } from './sms_harness.mjs';

const DEV1 = '491700000001', DEV2 = '491700000002';
const GSM_HI = Buffer.from([0x48, 0x69, 0x20, 0x1b, 0x3c, 0x1b, 0x65, 0x1b, 0x3e]); // "Hi [€]"

// The driver's stderr (the adapter's log) arrives apart from its stdout and the socket.
function logged(drv, re) {
  return waitFor(`log line ${re}`, () => re.test(drv.stderr));
}

function upLine(drv, from) {
  return drv.lines.slice(from).find((l) => l.startsWith('UP '));
}
function parseUp(l) {
  const [, id, ori, dest, rep, payload] = l.split(' ');
  return { id, ori, dest, rep, payload };
}

// ---------------------------------------------------------------------------------------
async function uplink() {
  const { smsc, drv, teardown } = await setup('uplink');
  // The devices were registered with m5s at start, by their UE Service IDs.
  await drv.wait('REGISTER');
  assert.equal(drv.find('REGISTER'), 'REGISTER 2 sms1,sms2');
  // The bind carried the configured identity.
  assert.equal(smsc.binds[0].system_id, 'gw1');
  assert.equal(smsc.binds[0].password, 's3cr3tpw');
  assert.ok(!drv.stderr.includes('s3cr3tpw'), 'the SMPP password is never logged');

  // 1. GSM 7-bit (data_coding 0, unpacked septets, extension table) from a device to a route:
  //    deliver_sm_resp is held until m5s acknowledged the message.
  await drv.set('uplink hold');
  let from = drv.lines.length;
  const m1 = smsc.send('deliver_sm', mo({ source_addr: '+' + DEV1, destination_addr: '1000',
    short_message: GSM_HI }));
  await waitFor('UP', () => upLine(drv, from));
  let up = parseUp(upLine(drv, from));
  assert.equal(up.ori, 'UE:sms1');
  assert.equal(up.dest, 'AS:as1');
  assert.equal(up.rep, '0');
  assert.equal(up.payload, utf8hex('Hi [€]'));
  let r1 = null;
  m1.resp.then((r) => { r1 = r; });
  await sync(smsc, drv);
  assert.equal(r1, null, 'deliver_sm_resp before m5s acknowledged the message');
  drv.cmd('release');
  await waitFor('deliver_sm_resp', () => r1);
  assert.equal(r1.command_status, 0);
  await drv.set('uplink accept');

  // 2. Device to device (by MSISDN), UCS-2, with an SME acknowledgement requested.
  from = drv.lines.length;
  let r = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: DEV2,
    data_coding: 8, registered_delivery: 0x04,
    short_message: Buffer.from('4e2dd83dde00', 'hex') }));
  assert.equal(r.command_status, 0);
  up = parseUp(upLine(drv, from));
  assert.equal(up.dest, 'UE:sms2');
  assert.equal(up.rep, '1', 'registered_delivery SME ack -> delivStReqInd');
  assert.equal(up.payload, utf8hex('\u4e2d\u{1F600}'));

  // 3. 8-bit data is passed through as bytes; a route to a UE.
  from = drv.lines.length;
  r = await smsc.request('deliver_sm', mo({ source_addr: DEV2, destination_addr: '2000',
    data_coding: 4, short_message: Buffer.from([0, 0xff, 0x80, 0x10]) }));
  assert.equal(r.command_status, 0);
  up = parseUp(upLine(drv, from));
  assert.equal(up.ori, 'UE:sms2');
  assert.equal(up.dest, 'UE:ue1');
  assert.equal(up.payload, '00ff8010');

  // 4. Refusals: an unknown device, an unknown destination, a septet above 0x7F, m5s refusing.
  from = drv.lines.length;
  r = await smsc.request('deliver_sm', mo({ source_addr: '4999', destination_addr: '1000',
    short_message: Buffer.from('x') }));
  assert.equal(r.command_status, smpp.ESME_RINVSRCADR);
  r = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '7777',
    short_message: Buffer.from('x') }));
  assert.equal(r.command_status, smpp.ESME_RINVDSTADR);
  r = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from([0x41, 0xe9]) }));
  assert.equal(r.command_status, smpp.ESME_RX_P_APPN);
  await logged(drv, /octet 233 at 1 is not a GSM 7-bit septet/);
  await sync(smsc, drv);
  assert.equal(upLine(drv, from), undefined, 'nothing refused reached the core');
  await drv.set('uplink refuse');
  r = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from('no') }));
  assert.equal(r.command_status, smpp.ESME_RX_P_APPN, 'm5s refused -> ESME_RX_P_APPN');
  await drv.set('uplink accept');

  // 5. A concatenated SMS (8-bit reference UDH), parts out of order: one message, and each
  //    part answered only once the whole was accepted.
  from = drv.lines.length;
  const text = 'A'.repeat(153) + 'B'.repeat(153) + 'C'.repeat(20);
  const part = (i, s) => Buffer.concat([Buffer.from([5, 0, 3, 0x77, 3, i]), Buffer.from(s)]);
  await drv.set('uplink hold');
  const p2 = smsc.send('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000', esm_class: 0x40,
    short_message: part(2, 'B'.repeat(153)) }));
  const p1 = smsc.send('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000', esm_class: 0x40,
    short_message: part(1, 'A'.repeat(153)) }));
  const p3 = smsc.send('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000', esm_class: 0x40,
    short_message: part(3, 'C'.repeat(20)) }));
  await waitFor('UP', () => upLine(drv, from));
  assert.equal(parseUp(upLine(drv, from)).payload, utf8hex(text));
  const got = [];
  for (const p of [p1, p2, p3]) p.resp.then((x) => got.push(x.command_status));
  await sync(smsc, drv);
  assert.equal(got.length, 0, 'parts answered before m5s acknowledged the whole');
  drv.cmd('release');
  await waitFor('3 answers', () => got.length === 3);
  assert.deepEqual(got, [0, 0, 0]);
  await drv.set('uplink accept');

  // 6. The same through SAR optional parameters (a 16-bit reference), UCS-2.
  from = drv.lines.length;
  const sar = (i, s) => mo({ source_addr: DEV2, destination_addr: '1000', data_coding: 8,
    sar_msg_ref_num: 0x1234, sar_total_segments: 2, sar_segment_seqnum: i,
    short_message: Buffer.from(s, 'utf16le').swap16() });
  const s1 = smsc.send('deliver_sm', sar(1, 'h\u00e9'));
  const s2 = smsc.send('deliver_sm', sar(2, '\u4e2d'));
  assert.equal((await s1.resp).command_status, 0);
  assert.equal((await s2.resp).command_status, 0);
  assert.equal(parseUp(upLine(drv, from)).payload, utf8hex('h\u00e9\u4e2d'));
  assert.equal(drv.all('UP ').length, 6);
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function downlink() {
  const { smsc, drv, teardown } = await setup('downlink');
  // 1. GSM text from an AS with a route: source_addr is the route's address, septets unpacked.
  drv.cmd(`deliver d1 AS as1 sms1 0 ${utf8hex('Hi [€]')}`);
  await drv.wait('DL d1');
  assert.equal(drv.find('DL d1'), 'DL d1 DELIVERED -');
  let s = smsc.submits[0];
  assert.equal(s.destination_addr, DEV1);
  assert.equal(s.dest_addr_ton, 1);
  assert.equal(s.source_addr, '1000');
  assert.equal(s.source_addr_ton, 0, 'a short code: TON unknown');
  assert.equal(s.data_coding, 0);
  assert.equal(s.esm_class, 0);
  assert.equal(s.registered_delivery, 0);
  assert.equal(hex(s.short_message), hex(GSM_HI));

  // 2. A character outside GSM -> UCS-2; a UE originator that is a device -> its MSISDN;
  //    one without a route -> sms.source_addr.
  drv.cmd(`deliver d2 UE sms2 sms1 0 ${utf8hex('Привет')}`);
  await drv.wait('DL d2');
  s = smsc.submits[1];
  assert.equal(s.data_coding, 8);
  assert.equal(s.source_addr, DEV2);
  assert.equal(s.source_addr_ton, 1, 'a device: international');
  assert.equal(hex(s.short_message), Buffer.from('Привет', 'utf16le').swap16().toString('hex'));
  drv.cmd(`deliver d3 UE nobody sms2 0 ${hex([0xff, 0xfe, 0x00, 0x81])}`);
  await drv.wait('DL d3');
  s = smsc.submits[2];
  assert.equal(s.data_coding, 4, 'not UTF-8 -> 8-bit data');
  assert.equal(s.source_addr, 'MSGIN5G');
  assert.equal(s.source_addr_ton, 5);
  assert.equal(hex(s.short_message), 'fffe0081');

  // 3. A long message: concatenated SMS, one reference, each part's TP-UD within 140 octets,
  //    DELIVERED only when the SMSC took every part.
  // (305 septets of 'x': the second part's last septet would be the escape of the first euro)
  const long = 'x'.repeat(305) + '€'.repeat(10) + 'end';
  smsc.holdSubmits = true;
  let n0 = smsc.submits.length;
  drv.cmd(`deliver d4 AS as1 sms2 0 ${utf8hex(long)}`);
  await waitFor('3 parts', () => smsc.submits.length === n0 + 3);
  const parts = smsc.submits.slice(n0);
  const ref = parts[0].short_message[3];
  let septets = [];
  parts.forEach((p, i) => {
    assert.equal(p.esm_class & 0x40, 0x40, 'UDHI');
    assert.equal(p.data_coding, 0);
    assert.deepEqual([...p.short_message.subarray(0, 6)], [5, 0, 3, ref, 3, i + 1]);
    const body = p.short_message.subarray(6);
    assert.ok(body.length <= 153, `part ${i + 1}: ${body.length} septets`);
    assert.ok(Math.ceil(((7 + body.length) * 7) / 8) <= 140, 'TP-UD: UDH + fill bit + septets');
    assert.notEqual(body[body.length - 1], 0x1b, 'an escape is never cut from its code');
    septets.push(...body);
  });
  assert.equal(parts[1].short_message.length - 6, 152, 'the cut moved before the escape');
  const expect = [...Buffer.from('x'.repeat(305))];
  for (let i = 0; i < 10; i++) expect.push(0x1b, 0x65);
  expect.push(...Buffer.from('end'));
  assert.deepEqual(septets, expect);
  smsc.releaseSubmits(2);
  await sync(smsc, drv);
  assert.equal(drv.find('DL d4'), undefined, 'DELIVERED before every part was accepted');
  smsc.releaseSubmits();
  await drv.wait('DL d4');
  assert.equal(drv.find('DL d4'), 'DL d4 DELIVERED -');
  smsc.holdSubmits = false;

  // 4. Unknown device, too long.
  drv.cmd(`deliver d5 AS as1 ue77 0 ${utf8hex('x')}`);
  await drv.wait('DL d5');
  assert.match(drv.find('DL d5'), /^DL d5 FAILED_UNKNOWN no MSISDN for UE:ue77/);
  drv.cmd(`deliver d6 AS as1 sms1 0 ${utf8hex('y'.repeat(16 * 153 + 1))}`);
  await drv.wait('DL d6');
  assert.match(drv.find('DL d6'), /^DL d6 FAILED_CONTENT .*sms.max_parts/);
  // The SMSC refusing the destination / the content.
  smsc.submitStatus = [smpp.ESME_RINVDSTADR, smpp.ESME_RINVESMCLASS];
  drv.cmd(`deliver d7 AS as1 sms1 0 ${utf8hex('a')}`);
  await drv.wait('DL d7');
  assert.match(drv.find('DL d7'), /^DL d7 FAILED_UNKNOWN/);
  drv.cmd(`deliver d8 AS as1 sms1 0 ${utf8hex('b')}`);
  await drv.wait('DL d8');
  assert.match(drv.find('DL d8'), /^DL d8 FAILED_CONTENT .*0x00000043/);

  // 5. Receipts: a report asked for -> registered_delivery 1; the SMSC's receipt (text form)
  //    becomes a report from the device to the originator.
  n0 = smsc.submits.length;
  drv.cmd(`deliver r1 AS as1 sms1 1 ${utf8hex('ack me')}`);
  await drv.wait('DL r1');
  s = smsc.submits[n0];
  assert.equal(s.registered_delivery, 1);
  let rr = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    esm_class: 0x04, short_message: Buffer.from(`id:${s.smsc_id} sub:001 dlvrd:001 submit date:2612071830 done date:2612071831 stat:DELIVRD err:000 text:ack me`) }));
  assert.equal(rr.command_status, 0);
  await drv.wait('REPORT_UP');
  assert.equal(drv.find('REPORT_UP'), 'REPORT_UP AS:as1 UE:sms1 r1 REPT_DELY_SUCCESS -');
  // A failed one, receipt by optional parameters, two parts: one report after both receipts.
  n0 = smsc.submits.length;
  drv.cmd(`deliver r2 UE ue1 sms2 1 ${utf8hex('z'.repeat(200))}`);
  await drv.wait('DL r2');
  const [a, b] = smsc.submits.slice(n0);
  const rcpt = (id, st) => mo({ source_addr: DEV2, destination_addr: '2000', esm_class: 0x04,
    receipted_message_id: id, message_state: st, short_message: Buffer.alloc(0) });
  rr = await smsc.request('deliver_sm', rcpt(a.smsc_id, 2));
  assert.equal(rr.command_status, 0);
  await sync(smsc, drv);
  assert.equal(drv.all('REPORT_UP').length, 1, 'no report before every part has its receipt');
  rr = await smsc.request('deliver_sm', rcpt(b.smsc_id, 5));
  await waitFor('2nd report', () => drv.all('REPORT_UP').length === 2);
  assert.match(drv.all('REPORT_UP')[1], /^REPORT_UP UE:ue1 UE:sms2 r2 REPT_DELY_FAILED SMSC receipt: stat UNDELIVERABLE$/);
  // A failed receipt in text form: its stat and err words in failureCause.
  n0 = smsc.submits.length;
  drv.cmd(`deliver r3 AS as1 sms1 1 ${utf8hex('expire me')}`);
  await drv.wait('DL r3');
  rr = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    esm_class: 0x04, short_message: Buffer.from(`id:${smsc.submits[n0].smsc_id} sub:001 dlvrd:000 stat:EXPIRED err:\x01x7`) }));
  assert.equal(rr.command_status, 0);
  await waitFor('3rd report', () => drv.all('REPORT_UP').length === 3);
  assert.equal(drv.all('REPORT_UP')[2], 'REPORT_UP AS:as1 UE:sms1 r3 REPT_DELY_FAILED SMSC receipt: stat EXPIRED err ?x7');
  // A receipt for an id the gateway does not know: acknowledged, nothing reported.
  rr = await smsc.request('deliver_sm', rcpt('nope', 2));
  assert.equal(rr.command_status, 0);

  // 6. A report m5s sends on a device's message: an ESME Delivery Acknowledgement to it.
  n0 = smsc.submits.length;
  drv.cmd('report AS as1 sms1 abc123 REPT_DELY_SUCCESS');
  await drv.wait('REPORT_RC');
  assert.equal(drv.find('REPORT_RC'), 'REPORT_RC 0');
  await waitFor('ack submit', () => smsc.submits.length === n0 + 1);
  s = smsc.submits[n0];
  assert.equal(s.esm_class, 0x08);
  assert.equal(s.destination_addr, DEV1);
  assert.equal(s.source_addr, '1000');
  assert.equal(s.data_coding, 0);
  assert.match(s.short_message.toString('latin1'), /^id:abc123 sub:001 dlvrd:001 stat:DELIVRD err:000/);
  drv.cmd('report UE ue1 nosuch m1 REPT_DELY_FAILED');
  await waitFor('2nd REPORT_RC', () => drv.all('REPORT_RC').length === 2);
  assert.equal(drv.all('REPORT_RC')[1], 'REPORT_RC -4', 'not one of our devices: M5_ENOENT');
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function link() {
  const { smsc, drv, teardown } = await setup('link', '  enquire_link_ms: 300\n');
  // enquire_link both ways: the SMSC's is answered; the gateway sends its own when idle.
  const r = await smsc.request('enquire_link', {});
  assert.equal(r.command_status, 0);
  await waitFor('gateway enquire_link', () => smsc.rx.some((p) => p.command === 'enquire_link'));

  // 1. The SMSC drops the connection with a submit in flight: RETRY, then a new bind.
  smsc.holdSubmits = true;
  drv.cmd(`deliver k1 AS as1 sms1 0 ${utf8hex('lost')}`);
  await waitFor('submit', () => smsc.submits.length === 1);
  smsc.drop();
  await drv.wait('DL k1');
  assert.match(drv.find('DL k1'), /^DL k1 RETRY SMSC link lost/);
  await waitFor('rebind', () => smsc.binds.length === 2);
  smsc.held = [];
  smsc.holdSubmits = false;
  await waitFor('bound again', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 2);
  drv.cmd(`deliver k2 AS as1 sms1 0 ${utf8hex('after')}`);
  await drv.wait('DL k2');
  assert.equal(drv.find('DL k2'), 'DL k2 DELIVERED -');

  // 2. The SMSC refuses the bind: back-off between attempts (logged), bound in the end.
  smsc.mode.bind = 2;
  const b0 = smsc.binds.length;
  smsc.drop();
  await waitFor('3 more binds', () => smsc.binds.length === b0 + 3);
  const at = smsc.binds.slice(b0).map((p) => p.at);
  log(`bind attempts after refusals: +${at[1] - at[0]} ms, +${at[2] - at[1]} ms (back-off)`);
  await logged(drv, /bind_transceiver refused: command_status 0x0000000d/);
  // Each refusal doubles the delay before the next attempt (sms.reconnect_min_ms 100).
  await logged(drv, /refused: command_status 0x0000000d\n.*reconnecting to the SMSC in 200 ms\n(.*\n)*.*refused: command_status 0x0000000d\n.*reconnecting to the SMSC in 400 ms/);
  await waitFor('bound a third time', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 3);

  // 3. The SMSC stops answering: the gateway's enquire_link goes unanswered, it reconnects.
  const s0 = smsc.sessions;
  smsc.mode.silent = true;
  await waitFor('enquire_link unanswered', () => /enquire_link unanswered/.test(drv.stderr), 10000);
  drv.cmd(`deliver k3 AS as1 sms1 0 ${utf8hex('down')}`);
  await drv.wait('DL k3');
  assert.match(drv.find('DL k3'), /^DL k3 RETRY /);
  await waitFor('reconnect', () => smsc.sessions > s0);
  // A bind left unanswered is given up after sms.response_timeout_ms too.
  await waitFor('bind unanswered', () => /bind_transceiver unanswered/.test(drv.stderr), 10000);
  smsc.mode.silent = false;
  await waitFor('bound a fourth time', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 4, 10000);
  // A submit_sm left unanswered drops the link too.
  smsc.mode.silent = true;
  drv.cmd(`deliver k4 AS as1 sms1 0 ${utf8hex('quiet')}`);
  await drv.wait('DL k4', 10000);
  assert.match(drv.find('DL k4'), /^DL k4 RETRY SMSC link lost/);
  await logged(drv, /submit_sm unanswered|enquire_link unanswered/);
  smsc.mode.silent = false;
  await waitFor('bound a fifth time', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 5, 10000);

  // 4. The SMSC unbinds: answered, then a new bind.
  const b1 = smsc.binds.length;
  const u = await smsc.request('unbind', {});
  assert.equal(u.command_status, 0);
  await waitFor('rebind after unbind', () => smsc.binds.length === b1 + 1);
  await waitFor('bound a sixth time', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 6, 10000);

  // 5. A device message waiting for m5s when the link drops: the SMSC delivers it again on
  //    the new connection; it is answered there once m5s accepted it, and sent to m5s once.
  await drv.set('uplink hold');
  const once = mo({ source_addr: DEV1, destination_addr: '1000', short_message: Buffer.from('once') });
  smsc.send('deliver_sm', once);
  await waitFor('UP', () => drv.all('UP ').length === 1);
  const b2 = smsc.binds.length;
  smsc.drop();
  await waitFor('rebind', () => smsc.binds.length === b2 + 1);
  await waitFor('bound a seventh time', () => (drv.stderr.match(/bound to SMSC/g) || []).length === 7, 10000);
  const again = smsc.send('deliver_sm', once);
  let ans = null;
  again.resp.then((x) => { ans = x; });
  await sync(smsc, drv);
  assert.equal(ans, null);
  await logged(drv, /redelivered by the SMSC: waiting for m5s/);
  drv.cmd('release');
  await waitFor('answer on the new connection', () => ans);
  assert.equal(ans.command_status, 0);
  assert.equal(drv.all('UP ').length, 1, 'the redelivered message went to m5s once');
  // While not bound, a delivery is handed back at once.
  smsc.mode.bind = 'refuse';
  smsc.drop();
  await waitFor('refused bind', () => /bind_transceiver refused/.test(drv.stderr.split('bound to SMSC').pop()));
  drv.cmd(`deliver k5 AS as1 sms1 0 ${utf8hex('unbound')}`);
  await drv.wait('DL k5');
  assert.equal(drv.find('DL k5'), 'DL k5 RETRY not bound to the SMSC');
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function throttle() {
  const { smsc, drv, teardown } = await setup('throttle', '  window: 2\n  throttle_retries: 3\n');
  // 1. The window: 5 messages, at most 2 submit_sm outstanding.
  smsc.holdSubmits = true;
  for (let i = 1; i <= 5; i++) drv.cmd(`deliver w${i} AS as1 sms1 0 ${utf8hex('w' + i)}`);
  await waitFor('2 submits', () => smsc.submits.length === 2);
  await sync(smsc, drv);
  assert.equal(smsc.submits.length, 2, 'more than sms.window submits outstanding');
  for (let k = 3; k <= 5; k++) {
    smsc.releaseSubmits(1);
    await waitFor(`${k} submits`, () => smsc.submits.length === k);
  }
  smsc.releaseSubmits();
  smsc.holdSubmits = false;
  await waitFor('5 DL', () => drv.all('DL w').length === 5);
  assert.ok(drv.all('DL w').every((l) => / DELIVERED /.test(l)));

  // 2. Throttling: ESME_RTHROTTLED then ESME_RMSGQFUL, then OK: sent again after a pause.
  const n0 = smsc.submits.length;
  smsc.submitStatus = [smpp.ESME_RTHROTTLED, smpp.ESME_RMSGQFUL];
  drv.cmd(`deliver t1 AS as1 sms1 0 ${utf8hex('slow down')}`);
  await drv.wait('DL t1');
  assert.equal(drv.find('DL t1'), 'DL t1 DELIVERED -');
  const t = smsc.submits.slice(n0);
  assert.equal(t.length, 3);
  assert.ok(t.every((p) => p.short_message.toString() === 'slow down'));
  log(`throttled resend after ${t[1].at - t[0].at} ms, ${t[2].at - t[1].at} ms`);
  // 3. Throttled past sms.throttle_retries: handed back to m5s as RETRY.
  smsc.submitStatus = Array(4).fill(smpp.ESME_RTHROTTLED);
  drv.cmd(`deliver t2 AS as1 sms1 0 ${utf8hex('give up')}`);
  await drv.wait('DL t2');
  assert.match(drv.find('DL t2'), /^DL t2 RETRY SMSC throttling .* after 3 retries/);
  // 4. Stopping with a delivery in flight: it completes with RETRY first.
  smsc.holdSubmits = true;
  const n1 = smsc.submits.length;
  drv.cmd(`deliver t3 AS as1 sms1 1 ${utf8hex('in flight')}`); // (with receipts expected)
  await waitFor('submit t3', () => smsc.submits.length === n1 + 1);
  await teardown();
  assert.equal(drv.find('DL t3'), 'DL t3 RETRY the gateway is stopping');
}

// ---------------------------------------------------------------------------------------
function rawPdu(id, seq, body = Buffer.alloc(0), len = null) {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(len ?? 16 + body.length, 0);
  h.writeUInt32BE(id, 4);
  h.writeUInt32BE(0, 8);
  h.writeUInt32BE(seq, 12);
  return Buffer.concat([h, body]);
}

async function malformed() {
  const { smsc, drv, teardown } = await setup('malformed');
  const nacks = () => smsc.rx.filter((p) => p.command === 'generic_nack');
  // A valid deliver_sm body, then broken copies of it.
  const good = new smpp.PDU('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from('ok') })).toBuffer().subarray(16);
  // 1. sm_length past the end of the PDU.
  const b1 = Buffer.from(good);
  b1[b1.length - 3] = 200;
  smsc.raw(rawPdu(0x5, 9001, b1));
  await waitFor('nack 1', () => nacks().length === 1);
  assert.equal(nacks()[0].sequence_number, 9001);
  assert.equal(nacks()[0].command_status, smpp.ESME_RINVCMDLEN);
  // 2. An optional parameter overrunning the PDU; 3. twenty optional parameters.
  smsc.raw(rawPdu(0x5, 9002, Buffer.concat([good, Buffer.from([0x04, 0x24, 0x01, 0x00, 1])])));
  const many = [];
  for (let i = 0; i < 20; i++) many.push(Buffer.from([0x04, 0x27, 0, 1, 2]));
  smsc.raw(rawPdu(0x5, 9003, Buffer.concat([good, ...many])));
  // 4. A source_addr without its terminating NUL (the library would strlen() past it).
  smsc.raw(rawPdu(0x5, 9004, Buffer.concat([Buffer.from([0]), Buffer.from([1, 1]), Buffer.alloc(40, 0x41)])));
  // 5. An invalid TON the library refuses (it leaks nothing; ASan checks at exit).
  const b5 = Buffer.from(good);
  b5[1] = 9;
  smsc.raw(rawPdu(0x5, 9005, Buffer.concat([b5, Buffer.from([0x04, 0x27, 0, 1, 2])])));
  // 6. An unknown command: generic_nack ESME_RINVCMDID.
  smsc.raw(rawPdu(0x99, 9006));
  await waitFor('6 nacks', () => nacks().length === 6);
  const bySeq = Object.fromEntries(nacks().map((p) => [p.sequence_number, p.command_status]));
  assert.deepEqual(bySeq, { 9001: 2, 9002: 2, 9003: 2, 9004: 2, 9005: 2, 9006: 3 });
  await logged(drv, /malformed deliver_sm \(sequence 9003\): more than 16 optional parameters/);
  // The link is still up and a good message goes through.
  const from = drv.lines.length;
  const r = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from('still here') }));
  assert.equal(r.command_status, 0);
  assert.equal(parseUp(upLine(drv, from)).payload, utf8hex('still here'));
  assert.equal(drv.all('UP ').length, 1, 'no malformed PDU became a message');
  // Optional parameters the adapter does not read are ignored: a vendor's, and a
  // user_message_reference with a 1-octet length (libsmpp34 alone would refuse the PDU).
  const vendor = new smpp.PDU('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from('vendor tlv') })).toBuffer().subarray(16);
  smsc.raw(rawPdu(0x5, 9010, Buffer.concat([vendor, Buffer.from([0x14, 0x01, 0, 2, 0xab, 0xcd]),
    Buffer.from([0x02, 0x04, 0, 1, 7])])));
  await waitFor('answer 9010', () => smsc.rx.find((p) => p.command === 'deliver_sm_resp' && p.sequence_number === 9010));
  assert.equal(smsc.rx.find((p) => p.sequence_number === 9010 && p.command === 'deliver_sm_resp').command_status, 0);
  await waitFor('UP 2', () => drv.all('UP ').length === 2);
  assert.equal(parseUp(drv.all('UP ')[1]).payload, utf8hex('vendor tlv'));
  // 7. A command_length below 16: the stream cannot be followed: generic_nack, reconnect.
  const b0 = smsc.binds.length;
  smsc.raw(rawPdu(0x5, 9007, Buffer.alloc(0), 8));
  await waitFor('reconnect', () => smsc.binds.length === b0 + 1);
  await logged(drv, /malformed PDU: command_length 8/);
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function concatMissing() {
  const { smsc, drv, teardown } = await setup('concat_missing');
  const part = (i, s) => mo({ source_addr: DEV1, destination_addr: '1000', esm_class: 0x40,
    short_message: Buffer.concat([Buffer.from([5, 0, 3, 0x42, 3, i]), Buffer.from(s)]) });
  const t0 = Date.now();
  const p1 = smsc.send('deliver_sm', part(1, 'first'));
  const p3 = smsc.send('deliver_sm', part(3, 'third'));
  const [r1, r3] = await Promise.all([p1.resp, p3.resp]);
  log(`parts refused after ${Date.now() - t0} ms (sms.reassembly_timeout_ms 1500)`);
  assert.equal(r1.command_status, smpp.ESME_RX_P_APPN);
  assert.equal(r3.command_status, smpp.ESME_RX_P_APPN);
  await logged(drv,
    /concatenated SMS from 491700000001 to 1000 \(ref 66\): part\(s\) 2 of 3 missing after 1500 ms; part\(s\) 1,3 refused with ESME_RX_P_APPN/);
  assert.equal(drv.all('UP ').length, 0, 'an incomplete message never reaches m5s');
  // A part whose UDH is broken is refused on its own.
  const bad = mo({ source_addr: DEV1, destination_addr: '1000', esm_class: 0x40,
    short_message: Buffer.from([9, 0, 3, 1]) });
  const r = await smsc.request('deliver_sm', bad);
  assert.equal(r.command_status, smpp.ESME_RX_P_APPN);
  await logged(drv, /UDH: length 9 overruns the 4-octet message/);
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function register() {
  // 1,500 devices: registered in calls of at most 1,000 IDs; m5s unreachable for the first
  // round (both calls fail): the round is repeated after a pause until it succeeds.
  const devices = [];
  for (let i = 0; i < 1500; i++) devices.push(`4917${String(i).padStart(8, '0')}=dev${i}`);
  const { drv, teardown } = await setup('register', '', { devices, args: ['2'] });
  await waitFor('4 REGISTER', () => drv.all('REGISTER').length === 4, 10000);
  const regs = drv.all('REGISTER').map((l) => l.split(' ')[1]);
  assert.deepEqual(regs, ['1000', '500', '1000', '500']);
  assert.ok(drv.all('REGISTER')[0].startsWith('REGISTER 1000 dev0,dev1,'));
  await logged(drv, /registering the devices failed \(-3: m5s unreachable\): again in 1000 ms/);
  await logged(drv, /1500 device\(s\) registered with m5s/);
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function bounds() {
  // What the SMSC can make the gateway hold is bounded: device messages waiting for m5s
  // (sms.max_pending_mo, reassemblies included) and SMS parts waiting for the window
  // (sms.queue_max); past them, "try again later" both ways, and nothing else changes.
  const { smsc, drv, teardown } = await setup('bounds',
    '  max_pending_mo: 2\n  queue_max: 3\n  window: 1\n');
  await drv.set('uplink hold');
  const m = (t) => smsc.send('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from(t) }));
  const a = m('one'), b = m('two');
  await waitFor('2 UP', () => drv.all('UP ').length === 2);
  const c = await m('three').resp;
  assert.equal(c.command_status, smpp.ESME_RX_T_APPN, 'past sms.max_pending_mo: temporary');
  const part = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    esm_class: 0x40, short_message: Buffer.from([5, 0, 3, 9, 2, 1, 0x41]) }));
  assert.equal(part.command_status, smpp.ESME_RX_T_APPN, 'a reassembly counts too');
  assert.equal(drv.all('UP ').length, 2);
  drv.cmd('release');
  assert.equal((await a.resp).command_status, 0);
  assert.equal((await b.resp).command_status, 0);
  await drv.set('uplink accept');
  const d = await smsc.request('deliver_sm', mo({ source_addr: DEV1, destination_addr: '1000',
    short_message: Buffer.from('four') }));
  assert.equal(d.command_status, 0, 'room again once m5s took them');

  smsc.holdSubmits = true;
  for (let i = 1; i <= 5; i++) drv.cmd(`deliver q${i} AS as1 sms1 0 ${utf8hex('q' + i)}`);
  await drv.wait('DL q5');
  assert.equal(drv.find('DL q5'), 'DL q5 RETRY sms.queue_max parts already wait for the SMSC');
  assert.equal(smsc.submits.length, 1, 'sms.window 1');
  smsc.holdSubmits = false;
  smsc.releaseSubmits();
  await waitFor('q1..q4 delivered', () => [1, 2, 3, 4].every((i) => drv.find(`DL q${i} DELIVERED`)));
  await teardown();
}

// ---------------------------------------------------------------------------------------
async function config() {
  // A bad sms.* configuration stops the gateway at start with the key and the entry named.
  const { Driver, config: cfg } = await import('./sms_harness.mjs');
  const cases = [
    ['devices', ['491700000001'], /sms.devices: '491700000001': expected MSISDN=ueSvcId/],
    ['devices', ['49170000000x=d1'], /sms.devices: '49170000000x=d1': expected MSISDN=ueSvcId/],
    ['devices', ['4917=d1', '4917=d2'], /sms.devices: '4917=d2' repeats an address or an ID/],
    ['devices', ['4917=d1', '4918=d1'], /sms.devices: '4918=d1' repeats an address or an ID/],
    ['extra', '  system_id: ""\n', /sms.system_id: required, 1-15 characters/],
    ['extra', '  password: "123456789"\n', /sms.password: at most 8 characters/],
    ['extra', '  source_addr: "TOOLONGNAME12"\n', /sms.source_addr: 1-20 digits or 1-11 characters/],
    ['extra', '  window: 0\n', /sms.window: expected an integer in 1..1000/],
    ['extra', '  routes: ["1000=as1"]\n', /sms.routes: '1000=as1': expected ADDR=TYPE:ID/],
    ['extra', '  routes: ["491700000001=AS:as1"]\n', /sms.routes: '491700000001=AS:as1': 491700000001 is a device's MSISDN/],
  ];
  let k = 0;
  for (const [what, v, re] of cases) {
    const text = what === 'devices' ? cfg(1, '', v) : cfg(1, v);
    const d = new Driver(`${process.env.M5_TMP}/config${k++}`, text);
    await d.start();
    await waitFor('exit', () => d.exited);
    assert.equal(d.exited.code, 2, `${re}: exit ${d.exited.code}`);
    assert.match(d.stderr, re);
    assert.ok(!d.lines.includes('READY'));
  }
}

const scenarios = { uplink, downlink, link, throttle, malformed, concat_missing: concatMissing,
  register, bounds, config };
const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`usage: sms_it.mjs ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
const guard = setTimeout(() => { console.error(`${name}: overall timeout`); process.exit(1); }, 240000);
scenarios[name]().then(() => {
  clearTimeout(guard);
  log(`${name}: ok`);
  process.exit(0);
}, (e) => {
  console.error(`${name}: FAILED: ${e.stack || e}`);
  process.exit(1);
});
