// A stand-in message gateway's delivery service for tests/it/test_m5s_gw.sh, serving what m5s
// POSTs to a gateway (TS 29.538 MSGG_L3GDelivery / MSGG_N3GDelivery): {root}/deliver-message
// (L3gMessageDelivery or N3gMessageDelivery) and {root}/deliver-report (DeliveryStatusReport).
// How it records, checks and answers is tests/schema/push_receiver.mjs (MODE_FILE: 503 or 429
// to play a gateway that cannot deliver now, 404 for an unknown device).
//   node gw_receiver.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR
import { runPushReceiver } from '../schema/push_receiver.mjs';

const ROUTES = {
  '/msgg-l3gdelivery/v1/deliver-message': ['TS29538_MSGG_L3GDelivery.yaml', 'L3gMessageDelivery'],
  '/msgg-n3gdelivery/v1/deliver-message': ['TS29538_MSGG_N3GDelivery.yaml', 'N3gMessageDelivery'],
  '/msgg-l3gdelivery/v1/deliver-report': ['TS29538_MSGS_MSGDelivery.yaml', 'DeliveryStatusReport'],
  '/msgg-n3gdelivery/v1/deliver-report': ['TS29538_MSGS_MSGDelivery.yaml', 'DeliveryStatusReport'],
};

runPushReceiver('gw_receiver', (path) => ROUTES[path] ?? `no such operation '${path}'`);
