"""dsd dump / verify / ls with an s3:// store (fauxqs: multipart uploads,
AbortMultipartUpload, ListMultipartUploads), against a real PostgreSQL 15.

The archive is big enough for a multipart upload; its sha256 as printed by
dsd dump equals the stored object's; a SIGINT in the middle of the data
leaves neither an object nor an unfinished multipart upload; the S3 secret
key and the database password never appear in the output.
"""

import hashlib
import os
import signal
import subprocess
import time

import common
from common import check
from pg import start_postgres
import s3

DSD = common.DSD_BIN


def main():
    if not os.path.exists(os.path.join(common.BUILD_DIR, "dsd_s3tool")):
        print("dsd_s3tool is not built; skipping")
        raise SystemExit(common.SKIP)
    pg = start_postgres()
    pg["createdb"]("src")
    # ~40 MB of hex text: about 20 MB compressed, several 8 MiB parts.
    pg["psql"]("src", "CREATE TABLE big AS SELECT i, md5(random()::text) AS a, md5(random()::text) AS b "
                      "FROM generate_series(1, 500000) i; CREATE TABLE small (x int); "
                      "INSERT INTO small VALUES (1), (2)")
    srv = s3.start_fauxqs()
    env = s3.env_for(srv, DSD_SOURCE_URI=pg["uri"]("src"))
    url = f"s3://{srv['bucket']}/dumps/a.tar.zst"

    r = subprocess.run([DSD, "dump", "--to", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = r.stdout.decode() + r.stderr.decode()
    check(r.returncode == 0, f"dump to s3 failed: {out}")
    check(srv["secret_key"] not in out and pg["password"] not in out, "a secret in the output")
    printed_sha = out.split("sha256 ")[1].split(",")[0]
    body = s3.s3tool(srv, "getall", "dumps/a.tar.zst").stdout
    check(hashlib.sha256(body).hexdigest() == printed_sha, "printed sha256 differs from the object's")
    check(len(body) > 8 * 1024 * 1024, f"archive too small for a multipart upload: {len(body)}")

    r = subprocess.run([DSD, "verify", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0 and r.stdout.decode().startswith("OK"), r.stdout.decode() + r.stderr.decode())
    check(printed_sha in r.stdout.decode(), "verify's archive sha256 differs")
    r = subprocess.run([DSD, "ls", f"s3://{srv['bucket']}"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    check(r.returncode == 0 and "dumps/a.tar.zst" in r.stdout.decode(), r.stdout.decode() + r.stderr.decode())

    # Cancel in the middle of the data: nothing left, no open upload.
    p = subprocess.Popen([DSD, "dump", "--workers", "1", "--to", f"s3://{srv['bucket']}/dumps/c.tar.zst"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until the multipart upload exists (the first part has filled), so
    # the cancel has an upload to abort, then interrupt.
    deadline = time.monotonic() + 60
    started = ""
    while time.monotonic() < deadline and p.poll() is None and not started:
        started = s3.s3tool(srv, "client", "list-uploads", srv["bucket"], "dumps/").stdout.decode().strip()
        time.sleep(0.02)
    check(started, "the dump finished or stalled before its multipart upload was seen")
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1].decode()
    check(p.returncode == 1 and "canceled" in err, f"cancel: rc={p.returncode} {err}")
    listing = s3.s3tool(srv, "list", "dumps/").stdout.decode()
    check("dumps/c.tar.zst" not in listing, f"canceled dump left an object: {listing}")
    uploads = s3.s3tool(srv, "client", "list-uploads", srv["bucket"], "dumps/").stdout.decode()
    check(uploads.strip() == "", f"canceled dump left a multipart upload: {uploads}")
    print("PASS")


if __name__ == "__main__":
    main()
