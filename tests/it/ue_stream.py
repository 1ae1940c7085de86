#!/usr/bin/python3
"""A steady stream of MSGs from one UE over one MSGin5G-1 session, for the fault tests (issue 13).

The CoAP and the AKMA-keyed TLS are coap_raw.py's (its Channel: openssl s_client). The UE
registers, then sends store-and-forward MSGs PREFIX-1, PREFIX-2, ... to the UE DEST one after
the other, GAP seconds apart. An answer 5.03 (the server cannot store it now) is sent again with
the same msgId after the answer's Max-Age (at most --max-wait seconds), as a UE must; a 2.04
MSGRESP without a DELY_FAILED status acknowledges it. It stops once the file STOP exists (after
the message in flight is acknowledged), or after --count messages.

Usage: ue_stream.py --port P --kaf HEX --akid TEXT --ori UE --dest UE --prefix P --stop FILE
                    [--gap S] [--count N] [--timeout S] [--max-wait S]

Output, one line each, ms = wall clock in milliseconds:
  ACK <msgId> <ms>             acknowledged (accepted for delivery or stored)
  RETRY <msgId> <code> <ms>    5.03: sent again after its Max-Age
  REFUSED <msgId> <code> <ms> <body>   any other answer (the test fails on it)
  DONE <sent> <acked>          at the end, exit 0
A lost session or a request without an answer within --timeout: "coap_raw: FAIL ...", exit 1.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import coap_raw  # noqa: E402


class QuietChannel(coap_raw.Channel):
    def log(self, s):
        pass


def now_ms():
    return int(time.time() * 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--kaf", required=True)
    ap.add_argument("--akid", required=True)
    ap.add_argument("--ori", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--gap", type=float, default=0.05)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--max-wait", type=float, default=2.0)
    a = ap.parse_args()
    # what coap_raw's Channel reads: TLS 1.3 with the AKMA PSK, ALPN coap, SNI localhost
    a.dtls, a.tls12, a.host, a.sni, a.cipher, a.alpn, a.identity, a.verbose = (
        False, False, "127.0.0.1", "localhost", None, "coap", None, False)
    ch = QuietChannel(a)
    try:
        reg = ch.request("msgin5g", coap_raw.FORMAT_JSON,
                         coap_raw.jbody({"msgType": "REG", "ueSvcId": a.ori}), a.timeout)
        if coap_raw.code_str(reg.code) not in ("2.01", "2.04"):
            coap_raw.fail("REG: %s %r" % (coap_raw.code_str(reg.code), reg.payload))
        print("REGISTERED %d" % now_ms(), flush=True)
        sent = acked = 0
        for n in range(1, a.count + 1):
            if os.path.exists(a.stop):
                break
            mid = "%s-%d" % (a.prefix, n)
            body = coap_raw.jbody({"msgType": "MSG",
                                   "oriAddr": {"addrType": "UE", "addr": a.ori},
                                   "destAddr": {"addrType": "UE", "addr": a.dest},
                                   "msgId": mid, "payload": "c3RyZWFt", "stoAndFwInd": True})
            sent += 1
            while True:
                ans = ch.request("msgin5g", coap_raw.FORMAT_JSON, body, a.timeout)
                code = coap_raw.code_str(ans.code)
                obj = coap_raw.parse_json_object(ans.payload) or {}
                if (code == "2.04" and obj.get("msgType") == "MSGRESP" and obj.get("msgId") == mid
                        and obj.get("status") in (None, "DELY_STORED")):
                    acked += 1
                    print("ACK %s %d" % (mid, now_ms()), flush=True)
                    break
                if code == "5.03":
                    v = ans.opt(coap_raw.OPT_MAX_AGE)
                    wait = int.from_bytes(v[0], "big") if v else 60
                    print("RETRY %s %s %d max-age=%s" % (mid, code, now_ms(),
                                                         "%d" % wait if v else "-"), flush=True)
                    time.sleep(min(wait, a.max_wait))
                    continue
                print("REFUSED %s %s %d %s" % (mid, code, now_ms(),
                                               json.dumps(ans.payload.decode("utf-8", "replace"))),
                      flush=True)
                break
            time.sleep(a.gap)
        print("DONE %d %d" % (sent, acked), flush=True)
    except SystemExit:
        ch.close()
        print("--- s_client stderr ---\n" + (ch.stderr_text().strip() or "(empty)"),
              file=sys.stderr)
        raise
    ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
