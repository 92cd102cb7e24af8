"""Retries and failure handling of the S3 client, through a fault-injecting
HTTP proxy placed between dsd_s3tool and fauxqs.

The proxy forwards requests to fauxqs except when a rule of the current
plan matches, and then it answers 503 SlowDown / 500 InternalError, drops
the connection without an answer, cuts a GET body half-way, or answers a
CompleteMultipartUpload with "200 OK" and an <Error> body (as S3 does when
it fails after starting its reply). It also records every request, so the
tests can check that bodies always carry Content-Length and never use
chunked transfer encoding or "Expect: 100-continue".
"""

import hashlib
import http.client
import http.server
import os
import socket
import sys
import threading
import unittest

import common
import s3

MiB = 1024 * 1024
UPSTREAM = None
PROXY = None


class Plan:
    """Rules: (method, path substring, action, remaining count)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.log = []  # (method, path, headers dict, body sha256)

    def set(self, *rules):
        with self.lock:
            self.rules = [list(r) for r in rules]
            self.log = []

    def take(self, method, path):
        with self.lock:
            for r in self.rules:
                if r[0] == method and r[1] in path and r[3] > 0:
                    r[3] -= 1
                    return r[2]
        return None


PLAN = Plan()

ERR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
       '<Message>injected by the test proxy</Message></Error>')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            body = b""  # recorded below; the test fails on it
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        with PLAN.lock:
            PLAN.log.append((self.command, self.path, dict(self.headers),
                             hashlib.sha256(body).hexdigest()))
        action = PLAN.take(self.command, self.path)
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
        lose_answer = action == "lose-answer"
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "keep-alive")}
        up.request(self.command, self.path, body=body if body or
                   self.command in ("PUT", "POST") else None, headers=headers)
        resp = up.getresponse()
        data = resp.read()
        up.close()
        if lose_answer:  # the server acted, but its answer never arrives
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "keep-alive",
                                 "transfer-encoding", "content-length"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length",
                             resp.getheader("Content-Length") or "0")
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

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def setUpModule():
    global UPSTREAM, PROXY
    fx = s3.start_fauxqs(bucket="dsd")
    UPSTREAM = int(fx["endpoint"].rsplit(":", 1)[1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    common.on_exit(srv.shutdown)
    PROXY = dict(fx, endpoint=f"http://127.0.0.1:{srv.server_address[1]}")


def tool(*args, **kw):
    return s3.s3tool(PROXY, *args, **kw)


def uploads(prefix):
    out = tool("client", "list-uploads", PROXY["bucket"], prefix).stdout
    return [line.split(" ") for line in out.decode().splitlines() if line]


class FaultTest(unittest.TestCase):
    def tearDown(self):
        PLAN.set()

    def assert_bodies_well_formed(self):
        for method, path, headers, _ in PLAN.log:
            low = {k.lower(): v for k, v in headers.items()}
            self.assertNotIn("chunked", low.get("transfer-encoding", ""),
                             f"{method} {path} used chunked encoding")
            self.assertNotIn("expect", low, f"{method} {path} sent Expect")
            if method in ("PUT", "POST"):
                self.assertIn("content-length", low,
                              f"{method} {path} without Content-Length")
            self.assertIn("authorization", low)

    def test_put_retries_slowdown_and_replays_the_body(self):
        data = os.urandom(200000)
        PLAN.set(("PUT", "/dsd/retry/put", "503", 2))
        r = tool("put", "retry/put", input=data)
        self.assertIn(b"retrying", r.stderr)
        puts = [e for e in PLAN.log if e[0] == "PUT"]
        self.assertEqual(len(puts), 3)
        # Each attempt carried the whole body.
        self.assertEqual({e[3] for e in puts},
                         {hashlib.sha256(data).hexdigest()})
        self.assertEqual(tool("getall", "retry/put").stdout, data)
        self.assert_bodies_well_formed()

    def test_session_token_is_sent_and_signed(self):
        token = "FwoGZXIvYXdzEXAMPLE/token+" + os.urandom(8).hex()
        PLAN.set()
        env = s3.env_for(PROXY, AWS_SESSION_TOKEN=token)
        r = tool("put", "retry/token", input=b"t", env=env)
        put = [e for e in PLAN.log if e[0] == "PUT"][0]
        low = {k.lower(): v for k, v in put[2].items()}
        self.assertEqual(low["x-amz-security-token"], token)
        self.assertIn("x-amz-security-token", low["authorization"].split(
            "SignedHeaders=")[1].split(",")[0].split(";"))
        self.assertNotIn(token.encode(), r.stdout + r.stderr)

    def test_persistent_5xx_gives_up_after_5_attempts(self):
        PLAN.set(("PUT", "/dsd/retry/never", "500", 99))
        r = tool("put", "retry/never", input=b"x", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"after 5 attempts", r.stderr)
        self.assertIn(b"InternalError", r.stderr)
        self.assertEqual(len([e for e in PLAN.log if e[0] == "PUT"]), 5)

    def test_multipart_survives_part_errors_and_dropped_connections(self):
        data = os.urandom(16 * MiB + 3)
        PLAN.set(("PUT", "partNumber=2&", "500", 1),
                 ("PUT", "partNumber=3&", "drop", 1),
                 ("POST", "uploads", "503", 1))
        r = tool("stream-write", "retry/multi", "--part-size", 5 * MiB,
                 "--in-flight", 2, input=data)
        self.assertIn(b"upload-id", r.stdout)
        parts = [e for e in PLAN.log if e[0] == "PUT" and "partNumber" in e[1]]
        self.assertEqual(len(parts), 4 + 2)  # 4 parts, 2 retried
        self.assert_bodies_well_formed()
        got = tool("get", "retry/multi").stdout
        self.assertEqual(hashlib.sha256(got).hexdigest(),
                         hashlib.sha256(data).hexdigest())
        self.assertEqual(uploads("retry/"), [])

    def test_ranged_get_resumes_after_a_cut_body(self):
        data = os.urandom(3 * MiB)
        tool("put", "retry/get", input=data)
        PLAN.set(("GET", "/dsd/retry/get", "cut", 1))
        env = s3.env_for(PROXY, DSD_S3_READ_CHUNK=2 * MiB)
        got = tool("get", "retry/get", env=env).stdout
        self.assertEqual(got, data)
        ranges = [e[2].get("Range") or e[2].get("range")
                  for e in PLAN.log if e[0] == "GET"]
        # First chunk cut half-way (1 MiB delivered), resumed at 1 MiB.
        self.assertEqual(ranges[0], f"bytes=0-{2 * MiB - 1}")
        self.assertEqual(ranges[1], f"bytes={MiB}-{2 * MiB - 1}")
        self.assertEqual(ranges[2], f"bytes={2 * MiB}-{3 * MiB - 1}")

    def test_complete_200_with_error_is_retried(self):
        data = os.urandom(6 * MiB)
        PLAN.set(("POST", "uploadId=", "complete-error", 1))
        r = tool("stream-write", "retry/complete", "--part-size", 5 * MiB,
                 input=data)
        self.assertIn(b"answered 200 with InternalError", r.stderr)
        self.assertEqual(tool("getall", "retry/complete").stdout, data)

    def test_complete_whose_answer_was_lost(self):
        # The retried Complete finds no upload (it completed); the writer
        # recognises the object by its multipart ETag instead of failing.
        data = os.urandom(11 * MiB)
        PLAN.set(("POST", "uploadId=", "lose-answer", 1))
        r = tool("stream-write", "retry/lost", "--part-size", 5 * MiB,
                 input=data)
        self.assertIn(b"had completed before its answer was lost", r.stderr)
        self.assertEqual(len([e for e in PLAN.log if e[0] == "POST" and
                              "uploadId=" in e[1]]), 2)
        self.assertEqual(tool("getall", "retry/lost").stdout, data)
        self.assertEqual(uploads("retry/lost"), [])

    def test_complete_200_with_error_fails_and_aborts(self):
        data = os.urandom(6 * MiB)
        PLAN.set(("POST", "uploadId=", "complete-error", 99))
        r = tool("stream-write", "retry/badcomplete", "--part-size", 5 * MiB,
                 input=data, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"failed to complete the multipart upload", r.stderr)
        self.assertIn(b"upload-id", r.stdout)
        aborts = [e for e in PLAN.log if e[0] == "DELETE" and "uploadId" in e[1]]
        self.assertEqual(len(aborts), 1)
        self.assertEqual(uploads("retry/badcomplete"), [])
        r = tool("head", "retry/badcomplete", check=False)
        self.assertIn(b"ENOTFOUND", r.stderr)

    def test_failed_part_aborts_the_upload(self):
        data = os.urandom(16 * MiB)
        PLAN.set(("PUT", "partNumber=2&", "500", 99))
        r = tool("stream-write", "retry/badpart", "--part-size", 5 * MiB,
                 input=data, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"after 5 attempts", r.stderr)
        self.assertEqual(uploads("retry/badpart"), [])
        r = tool("head", "retry/badpart", check=False)
        self.assertIn(b"ENOTFOUND", r.stderr)


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
