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
import os
import sys
import unittest

import common
import faultproxy
import s3

MiB = 1024 * 1024
PROXY = None
PLAN = None


def setUpModule():
    global PROXY, PLAN
    PROXY = faultproxy.start(s3.start_fauxqs(bucket="dsd"))
    PLAN = PROXY["plan"]


def tool(*args, **kw):
    return s3.s3tool(PROXY, *args, **kw)


def uploads(prefix):
    out = tool("client", "list-uploads", PROXY["bucket"], prefix).stdout
    return [line.split(" ") for line in out.decode().splitlines() if line]


class FaultTest(unittest.TestCase):
    def tearDown(self):
        PLAN.set()

    def assert_bodies_well_formed(self):
        for method, path, headers, _ in PLAN.requests:
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
        puts = [e for e in PLAN.requests if e[0] == "PUT"]
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
        put = [e for e in PLAN.requests if e[0] == "PUT"][0]
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
        self.assertEqual(len([e for e in PLAN.requests if e[0] == "PUT"]), 5)

    def test_multipart_survives_part_errors_and_dropped_connections(self):
        data = os.urandom(16 * MiB + 3)
        PLAN.set(("PUT", "partNumber=2&", "500", 1),
                 ("PUT", "partNumber=3&", "drop", 1),
                 ("POST", "uploads", "503", 1))
        r = tool("stream-write", "retry/multi", "--part-size", 5 * MiB,
                 "--in-flight", 2, input=data)
        self.assertIn(b"upload-id", r.stdout)
        parts = [e for e in PLAN.requests if e[0] == "PUT" and "partNumber" in e[1]]
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
                  for e in PLAN.requests if e[0] == "GET"]
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
        self.assertEqual(len([e for e in PLAN.requests if e[0] == "POST" and
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
        aborts = [e for e in PLAN.requests if e[0] == "DELETE" and "uploadId" in e[1]]
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
