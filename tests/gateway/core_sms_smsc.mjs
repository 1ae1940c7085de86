// The SMSC of core_e2e_sms.sh: the npm `smpp` package's server side through the SMS adapter's
// test harness (tests/gateway/sms_harness.mjs), scripted for one round trip through m5gw:
// waits for the gateway's bind, for the submit_sm of the message a UE sent to the device
// (printed as "SUBMIT <destination_addr> <text>"); if it asked for a receipt (registered_delivery
// 1), sends the SMSC's delivery receipt for it (text form, stat:DELIVRD) and prints "RECEIPT
// <command_status>" once the gateway answered; then sends a mobile-originated deliver_sm
// from the device to the route 2000 and prints "MO <command_status>" once the gateway answered
// it (the SMS adapter answers only after m5s acknowledged the message). Prints "PORT <n>"
// first. Exits 0 when done, 1 on a timeout.
//   node core_sms_smsc.mjs DEVICE_MSISDN TEXT
import { Smsc, mo, waitFor } from './sms_harness.mjs';

const [msisdn, text] = process.argv.slice(2);
const smsc = new Smsc();
const port = await smsc.listen();
console.log(`PORT ${port}`);
try {
  await waitFor('bind', () => smsc.binds.length > 0, 60000);
  console.log('BOUND');
  const sub = await waitFor('submit_sm', () => smsc.submits[0], 60000);
  const sm = Buffer.from(sub.short_message.message ?? sub.short_message).toString('latin1');
  console.log(`SUBMIT ${sub.destination_addr} ${sm}`);
  if (sub.registered_delivery === 1) {
    const rc = await smsc.request('deliver_sm', mo({ source_addr: sub.destination_addr,
      destination_addr: sub.source_addr, esm_class: 0x04,
      short_message: Buffer.from(`id:${sub.smsc_id} sub:001 dlvrd:001 submit date:2612072100 ` +
        `done date:2612072100 stat:DELIVRD err:000 text:${sm.slice(0, 20)}`, 'latin1') }), 30000);
    console.log(`RECEIPT ${rc.command_status}`);
  }
  const r = await smsc.request('deliver_sm', mo({ source_addr: msisdn, destination_addr: '2000',
    short_message: Buffer.from(text, 'latin1') }), 30000);
  console.log(`MO ${r.command_status}`);
  await smsc.close();
  process.exit(0);
} catch (e) {
  console.log(`ERROR ${e.message}`);
  process.exit(1);
}
