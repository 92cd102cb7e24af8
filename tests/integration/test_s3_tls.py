"""TLS to S3: certificates are verified by default, DSD_S3_CA_FILE points
the client at a private CA, and AWS_ENDPOINT_URL (the generic variable)
works when AWS_ENDPOINT_URL_S3 is unset. The server is fauxqs behind a
TLS-terminating forwarder with a self-signed certificate."""

import os
import sys
import unittest

import common
import s3

MiB = 1024 * 1024
TLS = None
PLAIN = None


def setUpModule():
    global TLS, PLAIN
    PLAIN = s3.start_fauxqs(bucket="dsd")
    TLS = s3.start_tls_proxy(PLAIN)


class TlsTest(unittest.TestCase):
    def test_unknown_certificate_is_refused(self):
        r = s3.s3tool(TLS, "put", "tls/refused", input=b"x", check=False)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertIn("ENET", err)
        self.assertIn("HINT: check the server certificate or set "
                      "DSD_S3_CA_FILE", err)
        # Nothing reached the server.
        r = s3.s3tool(PLAIN, "head", "tls/refused", check=False)
        self.assertIn(b"ENOTFOUND", r.stderr)

    def test_private_ca_and_generic_endpoint_variable(self):
        env = s3.env_for(TLS, DSD_S3_CA_FILE=TLS["ca_file"])
        env.pop("AWS_ENDPOINT_URL_S3")
        env["AWS_ENDPOINT_URL"] = TLS["endpoint"]
        data = os.urandom(6 * MiB + 1)
        r = s3.s3tool(TLS, "stream-write", "tls/obj", "--part-size", 5 * MiB,
                      input=data, env=env)
        self.assertIn(b"upload-id", r.stdout)
        self.assertEqual(s3.s3tool(TLS, "get", "tls/obj", env=env).stdout,
                         data)
        # It is the same bucket as seen without TLS.
        self.assertEqual(s3.s3tool(PLAIN, "getall", "tls/obj").stdout, data)


if __name__ == "__main__":
    r = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if r.wasSuccessful() else 1)
