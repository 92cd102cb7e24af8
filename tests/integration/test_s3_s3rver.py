"""The S3 client and s3:// blob store against s3rver, which checks SigV4
signatures: every request that succeeds here was signed the way S3 expects
(path encoding, sorted queries, `?uploads`, part uploads, ranges).

Driven through dsd_s3tool (tests/unit/s3tool.c), built with the project.
"""

import hashlib
import os
import sys
import unittest
import urllib.error
import urllib.request

import common
import s3

SERVER = None


def setUpModule():
    global SERVER
    SERVER = s3.start_s3rver(bucket="dsd")


class S3rverTest(unittest.TestCase):
    def tool(self, *args, **kw):
        return s3.s3tool(SERVER, *args, **kw)

    def test_put_get_head_delete_with_awkward_key(self):
        key = "dir/a b+c=$d&e\u00e9~(1).bin"
        data = os.urandom(70000)
        self.tool("put", key, input=data)
        self.assertEqual(self.tool("getall", key).stdout, data)
        head = self.tool("head", key).stdout.decode()
        self.assertIn("size=70000", head)
        self.assertNotIn("mtime=0", head)
        self.tool("delete", key)
        r = self.tool("head", key, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ENOTFOUND", r.stderr)
        # Deleting an absent key succeeds.
        self.tool("delete", key)

    def test_ranged_reader(self):
        data = os.urandom(10000)
        self.tool("put", "ranged/obj", input=data)
        # Small read chunks force many ranged GETs per read.
        env = s3.env_for(SERVER, DSD_S3_READ_CHUNK=999)
        self.assertEqual(self.tool("get", "ranged/obj", env=env).stdout, data)
        self.assertEqual(self.tool("get", "ranged/obj", 10, 100,
                                   env=env).stdout, data[10:110])
        self.assertEqual(self.tool("get", "ranged/obj", 9990).stdout,
                         data[9990:])
        self.assertEqual(self.tool("get", "ranged/obj", 20000).stdout, b"")
        r = self.tool("get", "ranged/absent", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ENOTFOUND", r.stderr)

    def test_small_stream_is_a_single_put(self):
        data = os.urandom(300 * 1024)
        r = self.tool("stream-write", "streams/small", "--chunk", 4096,
                      input=data)
        self.assertNotIn(b"upload-id", r.stdout)  # no multipart upload
        self.assertEqual(self.tool("getall", "streams/small").stdout, data)

    def test_multipart_stream_is_signed_correctly(self):
        data = os.urandom(12 * 1024 * 1024 + 12345)
        r = self.tool("stream-write", "streams/multi", "--part-size",
                      5 * 1024 * 1024, "--in-flight", 2, input=data)
        self.assertIn(b"upload-id", r.stdout)
        got = self.tool("get", "streams/multi").stdout
        self.assertEqual(hashlib.sha256(got).hexdigest(),
                         hashlib.sha256(data).hexdigest())

    def test_list_pagination(self):
        self.tool("put-many", "paged/k", 25)
        self.tool("put", "pagedX", input=b"not under paged/")
        env = s3.env_for(SERVER, DSD_S3_LIST_PAGE_SIZE=7)  # 4 pages
        out = self.tool("list", "paged/", env=env).stdout.decode().split("\n")
        keys = [line.split(" ")[0] for line in out if line]
        self.assertEqual(keys, [f"paged/k{i:05d}" for i in range(25)])

    def test_prefix_store(self):
        self.tool(f"s3://{SERVER['bucket']}/tenant-a/", "put", "x/y",
                  input=b"hello")
        self.assertEqual(self.tool("getall", "tenant-a/x/y").stdout, b"hello")
        out = self.tool(f"s3://{SERVER['bucket']}/tenant-a", "list").stdout
        self.assertEqual(out, b"x/y 5\n")

    def test_wrong_secret_is_reported_without_the_secret(self):
        wrong = "wrong-secret-" + os.urandom(8).hex()
        env = s3.env_for(SERVER, AWS_SECRET_ACCESS_KEY=wrong)
        r = self.tool("put", "denied/key", input=b"x", env=env, check=False)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("SignatureDoesNotMatch", err)
        self.assertIn("signature", err)
        self.assertIn("PUT dsd/denied/key", err)
        self.assertIn("HINT: check AWS_SECRET_ACCESS_KEY", err)
        self.assertIn("EAUTH", err)
        for out in (r.stdout.decode(), err):
            self.assertNotIn(wrong, out)
            self.assertNotIn(SERVER["secret_key"], out)
        # The object was not written.
        r = self.tool("head", "denied/key", check=False)
        self.assertIn(b"ENOTFOUND", r.stderr)

    def test_unknown_access_key(self):
        env = s3.env_for(SERVER, AWS_ACCESS_KEY_ID="NOSUCHKEY")
        r = self.tool("getall", "whatever", env=env, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"InvalidAccessKeyId", r.stderr)
        self.assertIn(b"AWS_ACCESS_KEY_ID", r.stderr)

    def test_presigned_get(self):
        data = b"presigned content " + os.urandom(16).hex().encode()
        self.tool("put", "pre/signed obj", input=data)
        url = self.tool("client", "presign", SERVER["bucket"],
                        "pre/signed obj", 300).stdout.decode().strip()
        self.assertIn("X-Amz-Signature=", url)
        self.assertNotIn(SERVER["secret_key"], url)
        with urllib.request.urlopen(url, timeout=30) as resp:
            self.assertEqual(resp.read(), data)
        # A changed signature is refused: the server really checks it.
        bad = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(bad, timeout=30)
        self.assertEqual(cm.exception.code, 403)

    def test_missing_bucket(self):
        r = self.tool("s3://no-such-bucket", "put", "k", input=b"x",
                      check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no-such-bucket", r.stderr)
        self.assertIn(b"ENOTFOUND", r.stderr)


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
