"""The s3:// blob store's streaming writer against fauxqs, which
implements AbortMultipartUpload and enforces S3's 5 MiB minimum part size
(and, through tests/harness/fauxqs.js, ListMultipartUploads): large
streams round-trip, small ones use one PutObject, and a failed, aborted or
canceled stream leaves neither an upload nor an object behind.
"""

import hashlib
import os
import sys
import unittest
import urllib.request

import common
import s3

SERVER = None
MiB = 1024 * 1024


def setUpModule():
    global SERVER
    SERVER = s3.start_fauxqs(bucket="dsd")


def uploads(prefix):
    out = s3.s3tool(SERVER, "client", "list-uploads", SERVER["bucket"],
                    prefix).stdout.decode()
    return [line.split(" ") for line in out.splitlines() if line]


class FauxqsTest(unittest.TestCase):
    def tool(self, *args, **kw):
        return s3.s3tool(SERVER, *args, **kw)

    def assertAbsent(self, key):
        r = self.tool("head", key, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ENOTFOUND", r.stderr)

    def test_40mib_stream_round_trip(self):
        data = os.urandom(40 * MiB + 777)
        r = self.tool("stream-write", "big/dump.tar.zst", "--part-size",
                      5 * MiB, "--in-flight", 3, "--chunk", 1000003,
                      input=data)
        self.assertIn(b"upload-id", r.stdout)
        self.assertIn(f"wrote {len(data)}".encode(), r.stdout)
        got = self.tool("get", "big/dump.tar.zst").stdout
        self.assertEqual(len(got), len(data))
        self.assertEqual(hashlib.sha256(got).hexdigest(),
                         hashlib.sha256(data).hexdigest())
        self.assertIn(f"size={len(data)}".encode(),
                      self.tool("head", "big/dump.tar.zst").stdout)
        self.assertEqual(uploads("big/"), [])

    def test_writer_memory_is_bounded(self):
        # 64 MiB through 5 MiB parts with 2 in flight: the writer holds at
        # most 3 parts (15 MiB), whatever the object size.
        data = os.urandom(64 * MiB)
        r = self.tool("stream-write", "bounded/obj", "--part-size", 5 * MiB,
                      "--in-flight", 2, input=data)
        out = r.stdout.decode()
        rss_kib = int(out.split("maxrss ")[1].split()[0])
        if "sanitizer 1" not in out:  # sanitizers keep freed memory
            self.assertLess(rss_kib, 32 * 1024, out)  # ~10 MiB is libraries
        got = self.tool("get", "bounded/obj").stdout
        self.assertEqual(hashlib.sha256(got).digest(),
                         hashlib.sha256(data).digest())

    def test_store_shared_by_threads(self):
        self.tool("put-many", "threads/k", 200, 8)
        out = self.tool("list", "threads/").stdout.decode().splitlines()
        self.assertEqual([l.split(" ")[0] for l in out],
                         [f"threads/k{i:05d}" for i in range(200)])
        for i in (0, 77, 199):
            self.assertEqual(self.tool("getall", f"threads/k{i:05d}").stdout,
                             f"threads/k{i:05d}".encode())

    def test_exactly_one_part_is_a_single_put(self):
        data = os.urandom(5 * MiB)
        r = self.tool("stream-write", "one/part", "--part-size", 5 * MiB,
                      input=data)
        self.assertNotIn(b"upload-id", r.stdout)
        self.assertEqual(self.tool("getall", "one/part").stdout, data)

    def test_small_parts_are_raised_to_the_s3_minimum(self):
        # fauxqs refuses non-final parts under 5 MiB at completion, so this
        # only passes because the writer raises 1 MiB to 5 MiB.
        data = os.urandom(11 * MiB)
        r = self.tool("stream-write", "min/part", "--part-size", MiB,
                      input=data)
        self.assertIn(b"upload-id", r.stdout)
        self.assertEqual(self.tool("getall", "min/part").stdout, data)

    def test_failed_stream_leaves_nothing(self):
        data = os.urandom(23 * MiB)
        r = self.tool("stream-write", "failed/dump", "--part-size", 5 * MiB,
                      "--in-flight", 2, "--fail-after", 17 * MiB,
                      input=data, check=False)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(b"upload-id", r.stdout)  # multipart had started
        self.assertEqual(uploads("failed/"), [])
        self.assertAbsent("failed/dump")

    def test_canceled_stream_leaves_nothing(self):
        data = os.urandom(30 * MiB)
        r = self.tool("stream-write", "canceled/dump", "--part-size", 5 * MiB,
                      "--cancel-after", 11 * MiB, input=data, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ECANCELED", r.stderr)
        self.assertEqual(uploads("canceled/"), [])
        self.assertAbsent("canceled/dump")

    def test_abort_uploads_recovers_leftovers(self):
        # Uploads left by a "crashed" process (fauxqs does not check
        # signatures, so plain HTTP can create them).
        def create(key):
            req = urllib.request.Request(
                f"{SERVER['endpoint']}/{SERVER['bucket']}/{key}?uploads",
                method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read().decode()
            return body.split("<UploadId>")[1].split("</UploadId>")[0]

        a1 = create("crash/dump")
        a2 = create("crash/dump")
        other = create("crash/dump2")  # same prefix, other key: kept
        self.assertEqual(sorted(u for _, u in uploads("crash/")),
                         sorted([a1, a2, other]))
        self.tool("abort-uploads", "crash/dump", a1)
        self.assertEqual(sorted(u for _, u in uploads("crash/")),
                         sorted([a2, other]))
        self.tool("abort-uploads", "crash/dump")
        self.assertEqual(uploads("crash/"), [["crash/dump2", other]])
        self.tool("abort-uploads", "crash/dump2")
        self.assertEqual(uploads("crash/"), [])

    def test_recovery_after_a_crash_with_a_prefixed_store(self):
        store = f"s3://{SERVER['bucket']}/tenant"
        data = os.urandom(20 * MiB)
        r = self.tool(store, "stream-write", "dumps/x.tar", "--part-size",
                      5 * MiB, "--crash-after", 12 * MiB, input=data,
                      check=False)
        self.assertEqual(r.returncode, -9, r.stderr)  # killed
        # on_upload_created reports the store key, which is what a
        # recovering process passes back to abort_uploads.
        line = [l for l in r.stdout.decode().splitlines()
                if l.startswith("upload-id ")][0]
        _, upload_id, key = line.split(" ")
        self.assertEqual(key, "dumps/x.tar")
        self.assertEqual(uploads("tenant/dumps/"),
                         [["tenant/dumps/x.tar", upload_id]])
        self.tool(store, "abort-uploads", key, upload_id)
        self.assertEqual(uploads("tenant/"), [])
        self.assertAbsent("tenant/dumps/x.tar")

    def test_list_more_than_1000_keys(self):
        self.tool("put-many", "many/k", 1005)
        out = self.tool("list", "many/").stdout.decode().splitlines()
        keys = [line.split(" ")[0] for line in out]
        self.assertEqual(len(keys), 1005)
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(keys[0], "many/k00000")
        self.assertEqual(keys[-1], "many/k01004")


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
