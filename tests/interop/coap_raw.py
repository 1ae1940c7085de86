#!/usr/bin/python3
"""Raw MSGin5G-1 (docs/protocol.md) driver over `openssl s_client`: a third-party UE.

The CoAP messages are encoded and decoded here (stdlib only); OpenSSL's s_client does the
AKMA-keyed (D)TLS (PSK = K_AF, identity "3GPP-AKMA" + A-KID, SNI). Runs under
/usr/bin/python3.

Usage:
  coap_raw.py --dtls|--tls [--tls12] --port P --kaf HEX --akid TEXT [--host 127.0.0.1]
              [--sni NAME] [--cipher NAME] [--identity TEXT] [--alpn coap|none]
              [--timeout S] [-v] -- STEP...
  coap_raw.py --selftest

  --dtls   CoAP over DTLS 1.2 (RFC 7252): s_client -dtls1_2 -cipher CIPHER (default
           PSK-AES128-GCM-SHA256; K_AF must be derived for that suite, e.g.
           `m5ctl akma derive --ua tls12:00a8`). Each write to s_client's stdin is one DTLS
           record, i.e. one datagram: one CoAP message per write.
  --tls    CoAP over TLS 1.3 (RFC 8323): s_client -tls1_3 -ciphersuites CIPHER (default
           TLS_AES_128_GCM_SHA256; K_AF from `--ua tls13`) -alpn coap. A CSM (7.01) is sent
           first; the server's CSM is skipped, Pings are answered with Pongs.
  --tls12  with --tls: TLS 1.2 instead (-cipher CIPHER, default PSK-AES128-GCM-SHA256).
  --sni    SNI to send (default localhost); an empty value sends none (-noservername).
  --identity  the whole PSK identity (default "3GPP-AKMA" + A-KID), for negative tests.
  --timeout   seconds each step waits at most (default 10).

Steps (run in order; every request is POST Uri-Path msgin5g, Content-Format 50, CON on UDP,
and waits for its answer, which the next `expect` checks):
  reg:UE                       REG  {"msgType":"REG","ueSvcId":UE}
  dereg:UE                     DEREG
  msg:ORI:DEST:MSGID:B64       MSG  from UE ORI to UE DEST (MSGID may contain ':')
  json:BODY                    any body text (not checked; its bytes as given, also when they
                               are not UTF-8), e.g. for 4.00 tests
  req:PATH:FORMAT:BODY         any Uri-Path and Content-Format (FORMAT "-" = no option)
  expect:CODE[:CHECK...]       the last answer's code (e.g. 2.01, or 2.01|2.04 for either)
                               and body checks. A CHECK is
                               KEY=VALUE (top-level member equals VALUE; "-" = absent, "*" =
                               present) or KEY~TEXT (contains TEXT; KEY "diag" = the whole
                               payload as text), or max-age=N (the Max-Age option; * = present). Implied
                               checks: REG 2.01/2.04 -> ueSvcId and
                               expiry; MSG 2.04 -> msgType=MSGRESP and msgId=the request's.
  recv[:CHECK...]              wait for a server-pushed request; it must be POST msgin5g with a
                               JSON MSG body; answer 2.04 with {"msgType":"MSGRESP","msgId":..}.
                               Extra checks: from=UE (alias expectfrom=UE: oriAddr.addr),
                               to=UE (destAddr.addr), msgid=ID, payload=B64, answer=CODE (answer
                               with that code instead, no body), and KEY=VALUE as for expect.
                               Prints "RECV <body>" on one line.
  hold                         wait for a server-pushed request and do not answer it yet (it
                               keeps its slot of NSTART / the window); prints "HELD <body>"
  answer-held[:CODE]           answer the held request 2.04 with a MSGRESP (or CODE, e.g. 5.03,
                               without a body)
  sleep:S                      pause S seconds (pushed requests are still answered)
  touch:PATH                   create the file PATH (tells a test script where we are)
  waitfile:PATH                wait until the file PATH exists (the script's go-ahead), at
                               most --timeout seconds; pushed requests are still answered
  quiet:S                      S seconds in which no request may be pushed to us

Output: one line per message sent (">") and received ("<"), "RECV <json>" per pushed MSG,
"OK" at the end, exit 0. Any mismatch, timeout, alert or s_client exit: "coap_raw: FAIL ..."
with s_client's stderr on stderr, exit 1. Usage errors exit 2.

Limitation (DTLS): s_client writes each record's plaintext to its stdout, a pipe, so two
datagrams that arrive back to back can reach us in one read. Messages are split again at the
end of a JSON payload or of an Empty message; two payload-less responses in one read cannot be
told apart (never happens in the flows above, where each exchange waits for its answer).
"""

import argparse
import base64
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time

# ---------------------------------------------------------------------------------------
# CoAP codec (RFC 7252 UDP header, RFC 8323 TCP framing, shared option encoding)

CON, NON, ACK, RST = 0, 1, 2, 3
TYPES = ("CON", "NON", "ACK", "RST")
POST = 2
CSM, PING, PONG, RELEASE, ABORT = 0xE1, 0xE2, 0xE3, 0xE4, 0xE5
OPT_URI_PATH, OPT_CONTENT_FORMAT, OPT_MAX_AGE, OPT_SIZE1 = 11, 12, 14, 60
OPT_CSM_MAX_MESSAGE_SIZE = 2
FORMAT_JSON = 50


class CoapError(Exception):
    pass


def code(text):
    """'2.04' -> 0x44."""
    c, d = text.split(".")
    return (int(c) << 5) | int(d)


def code_str(c):
    return "%d.%02d" % (c >> 5, c & 31)


def uint_bytes(v):
    out = b""
    while v:
        out = bytes([v & 0xFF]) + out
        v >>= 8
    return out


def bytes_uint(b):
    v = 0
    for x in b:
        v = (v << 8) | x
    return v


class Msg:
    def __init__(self, mtype=CON, mcode=0, mid=0, token=b"", opts=None, payload=b""):
        self.type = mtype
        self.code = mcode
        self.mid = mid
        self.token = token
        self.opts = list(opts or [])  # [(number, bytes)], kept sorted (stable)
        self.payload = payload

    def opt(self, num):
        return [v for n, v in self.opts if n == num]

    def path(self):
        return "/".join(v.decode("utf-8", "replace") for v in self.opt(OPT_URI_PATH))

    def fmt(self):
        v = self.opt(OPT_CONTENT_FORMAT)
        return bytes_uint(v[0]) if v else None

    def describe(self, udp=True):
        head = code_str(self.code)
        if self.code == POST:
            head = "POST"
        if udp:
            head = "%s %s mid=%d" % (TYPES[self.type], head, self.mid)
        s = "%s tok=%s" % (head, self.token.hex() or "-")
        extra = []
        for n, v in self.opts:
            if n == OPT_URI_PATH:
                extra.append("path=" + v.decode("utf-8", "replace"))
            elif n == OPT_CONTENT_FORMAT:
                extra.append("cf=%d" % bytes_uint(v))
            else:
                extra.append("opt%d=%s" % (n, v.hex() or '""'))
        if extra:
            s += " [" + " ".join(extra) + "]"
        if self.payload:
            s += " " + self.payload.decode("utf-8", "replace")
        return s


def _ext(v):
    """nibble, extension bytes for an option delta/length or an RFC 8323 Len."""
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    if v < 65805:
        return 14, (v - 269).to_bytes(2, "big")
    raise CoapError("option value too long")


def encode_opts(opts):
    out = bytearray()
    last = 0
    for n, v in sorted(opts, key=lambda o: o[0]):
        dn, de = _ext(n - last)
        ln, le = _ext(len(v))
        out.append((dn << 4) | ln)
        out += de + le + v
        last = n
    return bytes(out)


def decode_opts(b, i):
    """Options from b[i:] up to the payload marker or the end: (opts, payload_start)."""
    opts = []
    last = 0
    while i < len(b):
        x = b[i]
        if x == 0xFF:
            if i + 1 >= len(b):
                raise CoapError("payload marker without payload")
            return opts, i + 1
        i += 1
        vals = []
        for nib in (x >> 4, x & 15):
            if nib == 13:
                if i + 1 > len(b):
                    raise CoapError("truncated option")
                vals.append(b[i] + 13)
                i += 1
            elif nib == 14:
                if i + 2 > len(b):
                    raise CoapError("truncated option")
                vals.append(int.from_bytes(b[i:i + 2], "big") + 269)
                i += 2
            elif nib == 15:
                raise CoapError("reserved option nibble 15")
            else:
                vals.append(nib)
        last += vals[0]
        if i + vals[1] > len(b):
            raise CoapError("truncated option value")
        opts.append((last, bytes(b[i:i + vals[1]])))
        i += vals[1]
    return opts, len(b)


def encode_udp(m):
    if len(m.token) > 8:
        raise CoapError("token too long")
    out = bytes([0x40 | (m.type << 4) | len(m.token), m.code]) + m.mid.to_bytes(2, "big")
    out += m.token + encode_opts(m.opts)
    if m.payload:
        out += b"\xff" + m.payload
    return out


def decode_udp(b):
    if len(b) < 4:
        raise CoapError("datagram shorter than 4 bytes")
    if b[0] >> 6 != 1:
        raise CoapError("CoAP version %d" % (b[0] >> 6))
    tkl = b[0] & 15
    if tkl > 8:
        raise CoapError("TKL %d" % tkl)
    if 4 + tkl > len(b):
        raise CoapError("truncated token")
    m = Msg((b[0] >> 4) & 3, b[1], int.from_bytes(b[2:4], "big"), bytes(b[4:4 + tkl]))
    if m.code == 0:
        if len(b) != 4 + tkl or tkl:
            raise CoapError("Empty message with token, options or payload")
        return m
    m.opts, p = decode_opts(b, 4 + tkl)
    m.payload = bytes(b[p:])
    return m


def _plausible_udp_start(b):
    return len(b) >= 4 and b[0] >> 6 == 1 and (b[0] & 15) <= 8


def split_udp(b):
    """Splits a read that may hold several datagrams (see the limitation in the header)."""
    out = []
    while b:
        if not _plausible_udp_start(b):
            raise CoapError("not a CoAP datagram: %s" % b[:16].hex())
        tkl = b[0] & 15
        if b[1] == 0:  # Empty message: exactly the header
            out.append(b[:4 + tkl])
            b = b[4 + tkl:]
            continue
        try:
            _, p = decode_opts(b, 4 + tkl)
        except CoapError:
            out.append(b)
            break
        end = len(b)
        if p < len(b) and b[p:p + 1] == b"{":
            text = b[p:].decode("utf-8", "surrogateescape")
            try:
                _, n = json.JSONDecoder().raw_decode(text)
                j = p + len(text[:n].encode("utf-8", "surrogateescape"))
                if j < len(b) and _plausible_udp_start(b[j:]):
                    end = j
            except ValueError:
                pass
        out.append(b[:end])
        b = b[end:]
    return out


def encode_tcp(m):
    if len(m.token) > 8:
        raise CoapError("token too long")
    body = encode_opts(m.opts)
    if m.payload:
        body += b"\xff" + m.payload
    n = len(body)
    if n < 13:
        head = bytes([(n << 4) | len(m.token)])
    elif n < 269:
        head = bytes([(13 << 4) | len(m.token), n - 13])
    elif n < 65805:
        head = bytes([(14 << 4) | len(m.token)]) + (n - 269).to_bytes(2, "big")
    else:
        head = bytes([(15 << 4) | len(m.token)]) + (n - 65805).to_bytes(4, "big")
    return head + bytes([m.code]) + m.token + body


def decode_tcp(b):
    """One message from the front of a stream buffer: (Msg, consumed) or (None, 0)."""
    if not b:
        return None, 0
    ln, tkl = b[0] >> 4, b[0] & 15
    if tkl > 8:
        raise CoapError("TKL %d" % tkl)
    ext = {13: 1, 14: 2, 15: 4}.get(ln, 0)
    if len(b) < 1 + ext:
        return None, 0
    if ext:
        ln = int.from_bytes(b[1:1 + ext], "big") + {1: 13, 2: 269, 4: 65805}[ext]
    total = 1 + ext + 1 + tkl + ln
    if len(b) < total:
        return None, 0
    i = 1 + ext
    m = Msg(None, b[i], 0, bytes(b[i + 1:i + 1 + tkl]))
    body = bytes(b[i + 1 + tkl:total])
    m.opts, p = decode_opts(body, 0)
    m.payload = body[p:]
    return m, total


# ---------------------------------------------------------------------------------------
# The s_client transport


def fail(msg):
    raise SystemExit("coap_raw: FAIL " + msg)


class Channel:
    def __init__(self, a):
        self.a = a
        self.udp = a.dtls
        self.err = tempfile.TemporaryFile()
        ident = a.identity if a.identity is not None else "3GPP-AKMA" + a.akid
        cmd = ["openssl", "s_client", "-quiet", "-connect", "%s:%d" % (a.host, a.port),
               "-psk", a.kaf, "-psk_identity", ident]
        if a.sni:
            cmd += ["-servername", a.sni]
        else:
            cmd += ["-noservername"]
        if a.dtls:
            cmd += ["-dtls1_2", "-cipher", a.cipher or "PSK-AES128-GCM-SHA256"]
        elif a.tls12:
            cmd += ["-tls1_2", "-cipher", a.cipher or "PSK-AES128-GCM-SHA256"]
        else:
            cmd += ["-tls1_3", "-ciphersuites", a.cipher or "TLS_AES_128_GCM_SHA256"]
        if not a.dtls and a.alpn != "none":
            cmd += ["-alpn", a.alpn]
        self.log("s_client: " + " ".join(c if c != a.kaf else "<K_AF>" for c in cmd))
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, bufsize=0)
        self.inbuf = b""  # TCP stream bytes not parsed yet
        self.inq = []  # decoded messages not consumed yet
        self.mid = random.randrange(0, 65536)
        self.answered = {}  # UDP: mid of a pushed CON -> encoded answer (for retransmissions)
        self.pushed = []  # pushed requests waiting for a recv step
        if not self.udp:
            csm = Msg(None, CSM, opts=[(OPT_CSM_MAX_MESSAGE_SIZE, uint_bytes(1152 + 65536))])
            self.send(csm)

    def log(self, s):
        print(s, flush=True)

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode("utf-8", "replace")

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def die(self, msg):
        time.sleep(0.2)  # let s_client finish writing its diagnostics
        err = self.stderr_text().strip()
        alerts = [ln for ln in err.splitlines() if "alert" in ln.lower()]
        if alerts:
            msg += " (" + "; ".join(alerts[:3]) + ")"
        fail(msg)  # main() prints s_client's stderr

    def send(self, m):
        b = encode_udp(m) if self.udp else encode_tcp(m)
        self.log("> " + m.describe(self.udp))
        if self.a.verbose:
            self.log("  > %s" % b.hex())
        try:
            os.write(self.p.stdin.fileno(), b)
        except OSError as e:
            self.die("writing to s_client: %s" % e)
        return b

    def write_raw(self, b):
        try:
            os.write(self.p.stdin.fileno(), b)
        except OSError as e:
            self.die("writing to s_client: %s" % e)

    def next_msg(self, deadline):
        """The next decoded message, or None at the deadline."""
        while not self.inq:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 0.2))
            if not r:
                if self.p.poll() is not None:
                    self.die("s_client exited (rc %s): handshake refused or session closed"
                             % self.p.returncode)
                continue
            b = os.read(self.p.stdout.fileno(), 65536)
            if not b:
                self.p.wait(timeout=5)
                self.die("s_client closed its output (rc %s): the server ended the session"
                         % self.p.returncode)
            if self.a.verbose:
                self.log("  < %s" % b.hex())
            try:
                if self.udp:
                    self.inq += [decode_udp(d) for d in split_udp(b)]
                else:
                    self.inbuf += b
                    while True:
                        m, n = decode_tcp(self.inbuf)
                        if not m:
                            break
                        self.inbuf = self.inbuf[n:]
                        self.inq.append(m)
            except CoapError as e:
                self.die("undecodable CoAP from the server: %s (bytes %s)" % (e, b.hex()))
        return self.inq.pop(0)

    # -- incoming requests and signals that are not the answer we wait for --
    def handle_other(self, m):
        udp = self.udp
        if not udp and m.code == CSM:
            self.log("< server CSM " + m.describe(False))
            return
        if not udp and m.code == PING:
            self.log("< " + m.describe(False))
            self.send(Msg(None, PONG, token=m.token))
            return
        if not udp and m.code in (RELEASE, ABORT):
            self.die("server sent %s: %s" % (code_str(m.code), m.describe(False)))
        if 1 <= m.code <= 31:  # a request from the server
            if udp and m.type == CON and m.mid in self.answered:
                self.log("< duplicate %s (answered again)" % m.describe(True))
                self.write_raw(self.answered[m.mid])
                return
            if udp and m.type in (ACK, RST):
                self.die("request code in a %s: %s" % (TYPES[m.type], m.describe(True)))
            self.log("< pushed " + m.describe(udp))
            self.pushed.append(m)
            return
        if udp and m.type == CON:  # a stray response we do not expect: ACK it
            self.log("< unexpected " + m.describe(True) + " (ACKed)")
            self.send(Msg(ACK, 0, m.mid))
            return
        if udp and m.type == RST:
            self.die("server sent RST: %s" % m.describe(True))
        self.log("< ignored " + m.describe(udp))

    def answer(self, req, mcode, body):
        opts = [(OPT_CONTENT_FORMAT, uint_bytes(FORMAT_JSON))] if body else []
        if self.udp:
            if req.type == CON:
                a = Msg(ACK, mcode, req.mid, req.token, opts, body)
            else:
                a = Msg(NON, mcode, self.next_mid(), req.token, opts, body)
            b = self.send(a)
            if req.type == CON:
                self.answered[req.mid] = b
        else:
            self.send(Msg(None, mcode, token=req.token, opts=opts, payload=body))

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    # -- one exchange --
    def request(self, path, fmt, body, timeout):
        token = os.urandom(4)
        opts = [(OPT_URI_PATH, p.encode()) for p in path.split("/") if p]
        if fmt is not None:
            opts.append((OPT_CONTENT_FORMAT, uint_bytes(fmt)))
        mid = self.next_mid() if self.udp else 0
        req = Msg(CON if self.udp else None, POST, mid, token, opts, body)
        wire = self.send(req)
        start = time.monotonic()
        deadline = start + timeout
        acked = False
        rto, next_rt = 2.0, start + 2.0
        while True:
            wait_until = min(deadline, next_rt) if (self.udp and not acked) else deadline
            m = self.next_msg(wait_until)
            now = time.monotonic()
            if m is None:
                if now >= deadline:
                    self.die("no answer to the request within %gs" % timeout)
                self.log("  (retransmitting mid=%d)" % mid)
                self.write_raw(wire)
                rto *= 2
                next_rt = now + rto
                continue
            if self.udp:
                if m.type in (ACK, RST) and m.mid == mid:
                    if m.type == RST:
                        self.die("server answered the request with RST")
                    if m.code == 0:
                        self.log("< " + m.describe(True) + " (empty ACK: separate response)")
                        acked = True
                        continue
                    if m.token != token:
                        self.die("ACK with another token: " + m.describe(True))
                    self.log("< " + m.describe(True))
                    return m
                if m.type in (CON, NON) and m.code >= 64 and m.token == token:
                    self.log("< " + m.describe(True) + " (separate response)")
                    if m.type == CON:
                        self.send(Msg(ACK, 0, m.mid))
                    return m
            else:
                if m.code >= 64 and m.code < 0xE0 and m.token == token:
                    self.log("< " + m.describe(False))
                    return m
            self.handle_other(m)

    def wait_pushed(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.pushed:
            m = self.next_msg(deadline)
            if m is None:
                return None
            self.handle_other(m)
        return self.pushed.pop(0)


# ---------------------------------------------------------------------------------------
# Steps


def jbody(b):
    return json.dumps(b, separators=(",", ":")).encode()


def check_members(obj, payload, checks, what):
    for c in checks:
        if "~" in c and ("=" not in c or c.index("~") < c.index("=")):
            k, v = c.split("~", 1)
            got = payload.decode("utf-8", "replace") if k == "diag" else (
                None if obj is None or k not in obj else json.dumps(obj[k])
                if not isinstance(obj[k], str) else obj[k])
            if got is None or v not in got:
                fail("%s: %s should contain %r, body: %s" % (what, k, v, payload.decode(
                    "utf-8", "replace")))
            continue
        if "=" not in c:
            fail("bad check %r (want KEY=VALUE or KEY~TEXT)" % c)
        k, v = c.split("=", 1)
        if obj is None:
            fail("%s: body is not a JSON object, cannot check %s: %r" % (what, c, payload))
        if v == "-":
            if k in obj:
                fail("%s: member %s should be absent, body: %s" % (what, k, payload.decode()))
            continue
        if k not in obj:
            fail("%s: member %s missing, body: %s" % (what, k, payload.decode()))
        if v == "*":
            continue
        got = obj[k]
        gs = got if isinstance(got, str) else json.dumps(got)
        if gs != v:
            fail("%s: %s is %s, want %s; body: %s" % (what, k, gs, v, payload.decode()))


def parse_json_object(payload):
    try:
        o = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return o if isinstance(o, dict) else None


def run_steps(ch, steps, timeout):
    last = None  # (kind, request body obj, answer Msg)
    held = None  # a pushed request not answered yet (hold)
    for step in steps:
        kind, _, rest = step.partition(":")
        if kind in ("reg", "dereg"):
            body = {"msgType": kind.upper(), "ueSvcId": rest}
            ans = ch.request("msgin5g", FORMAT_JSON, jbody(body), timeout)
            last = (kind, body, ans)
        elif kind == "msg":
            f = rest.split(":")
            if len(f) < 4:
                fail("step %r: want msg:ORI:DEST:MSGID:B64" % step)
            body = {"msgType": "MSG", "oriAddr": {"addrType": "UE", "addr": f[0]},
                    "destAddr": {"addrType": "UE", "addr": f[1]},
                    "msgId": ":".join(f[2:-1]), "payload": f[-1]}
            ans = ch.request("msgin5g", FORMAT_JSON, jbody(body), timeout)
            last = (kind, body, ans)
        elif kind == "json":
            # the argument's bytes as given, also when they are not UTF-8 (surrogateescape)
            raw = rest.encode("utf-8", "surrogateescape")
            ans = ch.request("msgin5g", FORMAT_JSON, raw, timeout)
            last = (kind, parse_json_object(raw), ans)
        elif kind == "req":
            f = rest.split(":", 2)
            if len(f) != 3:
                fail("step %r: want req:PATH:FORMAT:BODY" % step)
            ans = ch.request(f[0], None if f[1] == "-" else int(f[1]), f[2].encode(), timeout)
            last = (kind, parse_json_object(f[2].encode()), ans)
        elif kind == "expect":
            if last is None:
                fail("step %r: no request before it" % step)
            f = rest.split(":")
            rkind, rbody, ans = last
            wants = f[0].split("|")
            want = code_str(ans.code)
            if want not in wants:
                want = f[0]
                fail("%s: got %s, want %s; payload: %s" % (rkind, code_str(ans.code), want,
                                                           ans.payload.decode("utf-8",
                                                                              "replace")))
            checks = [c for c in f[1:] if c]
            for c in [c for c in checks if c.startswith("max-age=")]:
                v = ans.opt(OPT_MAX_AGE)
                got = int.from_bytes(v[0], "big") if v else None
                if got is None if c[8:] == "*" else got != int(c[8:]):
                    fail("%s: Max-Age %s, want %s" % (rkind, got, c[8:]))
                checks.remove(c)
            obj = parse_json_object(ans.payload)
            if rkind == "reg" and want in ("2.01", "2.04"):
                checks = ["ueSvcId=" + rbody["ueSvcId"], "expiry=*"] + checks
            if rkind == "msg" and want == "2.04":
                checks = ["msgType=MSGRESP", "msgId=" + rbody["msgId"]] + checks
            if ans.payload and obj is not None and ans.fmt() != FORMAT_JSON:
                fail("%s: JSON answer without Content-Format 50" % rkind)
            check_members(obj, ans.payload, checks, "%s answer" % rkind)
            ch.log("OK %s -> %s" % (rkind, want))
        elif kind == "recv":
            checks = []
            answer_code = code("2.04")
            for c in [c for c in rest.split(":") if c]:
                k, _, v = c.partition("=")
                if k in ("from", "expectfrom"):
                    checks.append(("oriAddr", v))
                elif k == "to":
                    checks.append(("destAddr", v))
                elif k == "msgid":
                    checks.append(("msgId", v))
                elif k == "answer":
                    answer_code = code(v)
                else:
                    checks.append((None, c))
            m = ch.wait_pushed(timeout)
            if m is None:
                fail("no request pushed by the server within %gs" % timeout)
            if m.code != POST or m.path() != "msgin5g":
                fail("pushed request is %s %s, want POST msgin5g" % (code_str(m.code),
                                                                    m.path()))
            if m.fmt() != FORMAT_JSON:
                fail("pushed request Content-Format %s, want 50" % m.fmt())
            obj = parse_json_object(m.payload)
            if obj is None or obj.get("msgType") != "MSG":
                fail("pushed body is not a MSG: %r" % m.payload)
            print("RECV " + m.payload.decode("utf-8"), flush=True)
            for k, v in checks:
                if k in ("oriAddr", "destAddr"):
                    a = obj.get(k)
                    if not isinstance(a, dict) or a.get("addr") != v:
                        fail("pushed MSG %s is %s, want addr %s" % (k, json.dumps(a), v))
                elif k is None:
                    check_members(obj, m.payload, [v], "pushed MSG")
                else:
                    check_members(obj, m.payload, ["%s=%s" % (k, v)], "pushed MSG")
            try:
                raw = base64.b64decode(obj.get("payload", ""), validate=True)
                ch.log("  payload (decoded): %r" % raw)
            except (ValueError, TypeError):
                fail("pushed MSG payload is not base64: %r" % obj.get("payload"))
            if answer_code == code("2.04"):
                ch.answer(m, answer_code, jbody({"msgType": "MSGRESP",
                                                 "msgId": obj.get("msgId", "")}))
            else:
                ch.answer(m, answer_code, b"")
        elif kind == "hold":
            m = ch.wait_pushed(timeout)
            if m is None:
                fail("no request pushed by the server within %gs" % timeout)
            print("HELD " + m.payload.decode("utf-8", "replace"), flush=True)
            held = m
        elif kind == "answer-held":
            obj = parse_json_object(held.payload) or {}
            if rest and rest != "2.04":
                ch.answer(held, code(rest), b"")
            else:
                ch.answer(held, code("2.04"), jbody({"msgType": "MSGRESP",
                                                     "msgId": obj.get("msgId", "")}))
        elif kind == "touch":
            with open(rest, "a"):
                pass
        elif kind == "waitfile":
            end = time.monotonic() + timeout
            while not os.path.exists(rest):
                if time.monotonic() > end:
                    fail("waitfile: %s did not appear within %gs" % (rest, timeout))
                m = ch.next_msg(min(end, time.monotonic() + 0.05))
                if m is not None:
                    ch.handle_other(m)
        elif kind in ("sleep", "quiet"):
            end = time.monotonic() + float(rest)
            while True:
                m = ch.next_msg(end)
                if m is None:
                    break
                ch.handle_other(m)
                if ch.pushed and kind == "quiet":
                    fail("a request was pushed during quiet:%s: %s" % (rest,
                                                                      ch.pushed[0].describe(
                                                                          ch.udp)))
        else:
            fail("unknown step %r" % step)


# ---------------------------------------------------------------------------------------
# Self-test of the codec (no network)


def selftest():
    m = Msg(CON, POST, 0x1234, b"\x01\x02\x03\x04",
            [(OPT_URI_PATH, b"msgin5g"), (OPT_CONTENT_FORMAT, uint_bytes(50))],
            b'{"msgType":"REG","ueSvcId":"ue1"}')
    b = encode_udp(m)
    assert b[:4] == bytes([0x44, 0x02, 0x12, 0x34]), b.hex()
    assert b[4:8] == b"\x01\x02\x03\x04"
    assert b[8:16] == b"\xb7msgin5g", b.hex()  # delta 11, len 7
    assert b[16:18] == b"\x11\x32", b.hex()  # delta 1, len 1, 50
    assert b[18] == 0xFF
    d = decode_udp(b)
    assert (d.type, d.code, d.mid, d.token, d.path(), d.fmt(), d.payload) == (
        CON, POST, 0x1234, m.token, "msgin5g", 50, m.payload)
    # extended deltas and lengths (13 and 14 forms)
    big = Msg(ACK, code("2.04"), 7, b"", [(OPT_SIZE1, uint_bytes(65536)),
                                          (OPT_URI_PATH, b"x" * 20),
                                          (OPT_URI_PATH, b"y" * 300)], b"z")
    d = decode_udp(encode_udp(big))
    assert d.opts == sorted(big.opts, key=lambda o: o[0]), d.opts
    assert code_str(d.code) == "2.04" and d.payload == b"z"
    # splitting coalesced datagrams: empty ACK + response + pushed CON
    e = encode_udp(Msg(ACK, 0, 9))
    r = encode_udp(Msg(CON, code("2.04"), 10, b"\xaa", [(12, b"\x32")], b'{"a":"}{"}'))
    p = encode_udp(m)
    parts = split_udp(e + r + p)
    assert parts == [e, r, p], parts
    assert split_udp(r) == [r]
    # TCP framing: the three Len forms and the CSM
    for n in (0, 5, 12, 13, 200, 268, 269, 5000):
        t = Msg(None, POST, 0, b"\x05", [(OPT_URI_PATH, b"msgin5g")], b"p" * n)
        enc = encode_tcp(t)
        dec, used = decode_tcp(enc + b"\x00")
        assert used == len(enc) and dec.payload == t.payload and dec.path() == "msgin5g", n
        assert decode_tcp(enc[:-1]) == (None, 0)
    csm = encode_tcp(Msg(None, CSM, opts=[(OPT_CSM_MAX_MESSAGE_SIZE, uint_bytes(66688))]))
    assert csm == bytes([0x40, 0xE1, 0x23, 0x01, 0x04, 0x80]), csm.hex()
    try:
        decode_udp(b"\x44\x02\x00\x01\x01\x02\x03\x04\xff")
        raise AssertionError("payload marker without payload accepted")
    except CoapError:
        pass
    print("coap_raw selftest: ok")


def main():
    argv = sys.argv[1:]
    if argv == ["--selftest"]:
        selftest()
        return 0
    steps = []
    if "--" in argv:
        i = argv.index("--")
        argv, steps = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description="raw MSGin5G-1 CoAP over openssl s_client")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--dtls", action="store_true")
    g.add_argument("--tls", action="store_true")
    ap.add_argument("--tls12", action="store_true")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--kaf", required=True)
    ap.add_argument("--akid", required=True)
    ap.add_argument("--identity")
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--cipher")
    ap.add_argument("--alpn", default="coap")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not steps:
        ap.error("no steps (put them after --)")
    ch = Channel(a)
    try:
        run_steps(ch, steps, a.timeout)
    except SystemExit:
        ch.close()
        print("--- s_client stderr ---\n" + (ch.stderr_text().strip() or "(empty)"),
              file=sys.stderr)
        raise
    ch.close()
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
