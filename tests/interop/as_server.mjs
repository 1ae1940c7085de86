// A stand-in Application Server for the point-to-application tests, receiving what m5s POSTs
// to {targetUri}/<operation> (TS 29.538 cl. 5.3, as a consumer): deliver-message
// (UEMessageDelivery) and deliver-report (DeliveryStatusReport). How it records, checks and
// answers is tests/schema/push_receiver.mjs (MODE_FILE: e.g. 503 to play a failing AS).
//   node as_server.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR
import { runPushReceiver } from '../schema/push_receiver.mjs';

const SCHEMA = { 'deliver-message': 'UEMessageDelivery', 'deliver-report': 'DeliveryStatusReport' };

// A targetUri is the AS's own, so only the last path segment names the operation.
runPushReceiver('as_server', (path) => {
  const op = path.split('/').pop();
  if (!SCHEMA[op]) return `no schema for the operation '${op}'`;
  return ['TS29538_MSGS_MSGDelivery.yaml', SCHEMA[op]];
});
