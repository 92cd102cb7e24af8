"""A fault-injecting HTTP proxy for S3 tests, in front of a real S3 server
(fauxqs or s3rver), extracted so broker-level tests can use it too.

    proxy = faultproxy.start(server)          # server from s3.start_fauxqs()
    proxy["plan"].set(("PUT", "partNumber=", "503", 3))
    env = s3.env_for(proxy)                   # AWS_ENDPOINT_URL_S3 -> proxy

A rule is (method, path substring, action, remaining count); count -1
means forever. Actions: "503" (SlowDown), "500" (InternalError), "drop"
(connection closed without an answer), "complete-error" (200 with an
<Error> body), "lose-answer" (forwarded, answer dropped), "cut" (half the
body, then the connection closes), "slow:SECONDS" (forwarded after a
delay). Every request is recorded in plan.log as (method, path), and in
plan.requests as (method, path, headers dict, sha256 of the body) for
tests that check what the client sent. A chunked request body is not read
(S3 clients must send Content-Length); it is recorded with the headers that
show it. Only the Python standard library is used.
"""

import hashlib
import http.client
import http.server
import socket
import threading
import time

import common

ERR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
       '<Message>injected by the test proxy</Message></Error>')


class Plan:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.log = []
        self.requests = []
        self.hits = 0

    def set(self, *rules):
        with self.lock:
            self.rules = [list(r) for r in rules]
            self.log = []
            self.requests = []
            self.hits = 0

    def take(self, method, path):
        with self.lock:
            self.log.append((method, path))
            for r in self.rules:
                if r[0] == method and r[1] in path and r[3] != 0:
                    if r[3] > 0:
                        r[3] -= 1
                    self.hits += 1
                    return r[2]
        return None


def start(server):
    """Starts the proxy on a loopback port in front of server; returns a
    copy of server with its endpoint replaced and "plan" added."""
    upstream = int(server["endpoint"].rsplit(":", 1)[1])
    plan = Plan()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self):
            if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                body = b""
            else:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
            with plan.lock:
                plan.requests.append((self.command, self.path, dict(self.headers),
                                      hashlib.sha256(body).hexdigest()))
            action = plan.take(self.command, self.path) or ""
            if action == "503":
                return self.reply(503, ERR.format(code="SlowDown"))
            if action == "500":
                return self.reply(500, ERR.format(code="InternalError"))
            if action == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "complete-error":
                return self.reply(200, ERR.format(code="InternalError"))
            if action.startswith("slow:"):
                time.sleep(float(action[5:]))
            up = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            up.request(self.command, self.path, body=body if body or
                       self.command in ("PUT", "POST") else None, headers=headers)
            resp = up.getresponse()
            data = resp.read()
            up.close()
            if action == "lose-answer":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive",
                                     "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            if self.command == "HEAD":
                self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if action == "cut" and len(data) > 1:
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        def handle_safe(self):
            # A client killed mid-request (the crash tests) is expected.
            try:
                self.handle_any()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_safe

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    common.on_exit(srv.shutdown)
    return dict(server, endpoint=f"http://127.0.0.1:{srv.server_address[1]}", plan=plan)
