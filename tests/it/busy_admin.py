"""A stand-in for a busy m5s management port (tests/it/test_m5ctl_import.sh): HTTP/1.1
keep-alive in front of the real one; the first PUT of each path is answered 503 with
Retry-After: 1, as m5s answers with 64 changes waiting for its database (docs/admin-api.md),
and every other request is passed on to m5s. POST (any path) answers how many were refused.
Usage: busy_admin.py PORT_FILE UPSTREAM_PORT (writes its own port to PORT_FILE once listening).
"""
import http.client
import http.server
import os
import sys
import threading

port_file, upstream = sys.argv[1], int(sys.argv[2])
seen, lock, refused = set(), threading.Lock(), [0]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, method):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            first = method == "PUT" and self.path not in seen
            if method == "PUT":
                seen.add(self.path)
            refused[0] += first
        if first:
            self.reply(503, b'{"title":"Service Unavailable","status":503,"detail":"busy"}',
                       [("retry-after", "1"), ("content-type", "application/problem+json")])
            return
        c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() in ("authorization", "content-type", "accept")}
        c.request(method, self.path, body=body or None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        self.reply(r.status, data,
                   [("content-type", r.getheader("content-type", "application/json"))])
        c.close()

    def do_GET(self):
        self.forward("GET")

    def do_PUT(self):
        self.forward("PUT")

    def do_POST(self):
        self.reply(200, str(refused[0]).encode())


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
