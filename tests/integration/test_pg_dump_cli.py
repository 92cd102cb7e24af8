"""dsd dump / verify / ls against a real PostgreSQL 15, through the CLI.

Checks the archive layout (manifest first, summary last, drop, pre-data,
COPY data streams, blobs, sequences, post-data), that the hand-restore recipe
of the README (extract, cat the streams into psql) gives back the same data,
that `dsd verify` accepts the archive and rejects corrupted ones, that the
source password never appears in dsd's argv or output, and that a failed or
canceled dump leaves nothing in the store.
"""

import glob
import tarfile
import os
import shutil
import signal
import subprocess
import sys
import time

import common
from common import check
from pg import db_fingerprint, start_postgres

DSD = common.DSD_BIN

SCHEMA = r"""
CREATE TABLE public.customers (
  id serial PRIMARY KEY, email text UNIQUE, full_name text, note text,
  total numeric(10,2), born date, g int GENERATED ALWAYS AS (id * 2) STORED);
INSERT INTO customers (email, full_name, note, total, born)
  SELECT 'u' || i || '@x.org', 'Name ' || i, E'tab\there\nnewline \\ back', i * 1.5,
         '2000-01-01'::date + i
  FROM generate_series(1, 2000) i;
CREATE SCHEMA "we ird";
CREATE TABLE "we ird"."Ta""ble" (k int, v jsonb, b bytea);
INSERT INTO "we ird"."Ta""ble" VALUES (1, '{"a": 1}', '\x00ff'), (2, NULL, NULL);
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO events VALUES (1, '2024-05-01'), (2, '2024-06-01');
CREATE TABLE parent (a int);
CREATE TABLE child (b int) INHERITS (parent);
INSERT INTO parent VALUES (1);
INSERT INTO child VALUES (2, 3);
CREATE UNLOGGED TABLE ul (x int);
INSERT INTO ul VALUES (42);
CREATE TABLE empty_t ();
CREATE SEQUENCE s1;
SELECT setval('s1', 77);
CREATE SEQUENCE s2;
CREATE INDEX ON customers (full_name);
CREATE VIEW v AS SELECT * FROM customers;
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM customers;
SELECT lo_from_bytea(0, 'hello large object');
SELECT lo_from_bytea(0, convert_to(repeat('0123456789', 250000), 'UTF8'));
"""


def run(argv, env=None, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, **kw)


def dsd_env(extra=None):
    e = dict(os.environ)
    for k in ("DSD_SOURCE_URI", "DSD_TARGET_URI", "PGPASSWORD"):
        e.pop(k, None)
    e.update(extra or {})
    return e


def tar_list(path, flag="--zstd"):
    r = run(["tar", flag, "-tf", path])
    check(r.returncode == 0, f"tar -tf failed: {r.stderr.decode()}")
    return r.stdout.decode().splitlines()


def store_files(d):
    return sorted(os.path.relpath(p, d) for p in glob.glob(os.path.join(d, "**"), recursive=True)
                  if os.path.isfile(p))


def main():
    pg = start_postgres()
    pw = pg["password"]
    pg["createdb"]("src")
    pg["psql"]("src", SCHEMA)
    src_uri = pg["uri"]("src")
    work = common.tmpdir()
    store = os.path.join(work, "store")
    os.mkdir(store)

    # 1. Dump with the URI only in the environment.
    archive = os.path.join(store, "a.tar.zst")
    r = run([DSD, "dump", "--to", "file://" + archive, "--workers", "3"],
            env=dsd_env({"DSD_SOURCE_URI": src_uri}))
    out = r.stdout.decode() + r.stderr.decode()
    check(r.returncode == 0, f"dsd dump failed: {out}")
    check(pw not in out, "the source password appears in dsd's output")
    check("sha256" in r.stdout.decode(), f"no result line: {out}")
    print("dump ok:", r.stdout.decode().strip())

    # 2. Layout.
    names = tar_list(archive)
    check(names[0] == "manifest.json", f"first entry is {names[0]}")
    check(names[-1] == "summary.json", f"last entry is {names[-1]}")
    for need in ("pg/drop/000001", "pg/pre-data/000001", "pg/blobs/000001",
                 "pg/sequences/000001", "pg/post-data/000001"):
        check(need in names, f"{need} missing from {names}")
    order = [n.split("/")[1] for n in names[1:-1]]
    firsts = {k: order.index(k) for k in set(order)}
    check(firsts["drop"] < firsts["pre-data"] < firsts["data"] < firsts["blobs"]
          < firsts["sequences"] < firsts["post-data"], f"stream order {names}")
    ext = os.path.join(work, "x")
    os.mkdir(ext)
    r = run(["tar", "--zstd", "-xf", archive], cwd=ext)
    check(r.returncode == 0, r.stderr.decode())
    import json
    with open(os.path.join(ext, "manifest.json")) as f:
        manifest = json.load(f)
    check(manifest["format"] == "dsd-archive" and manifest["version"] == 1, manifest)
    check(manifest["dialect"] == "pg", manifest)
    tables = {(t["schema"], t["name"]): t for t in manifest["pg"]["tables"]}
    check(("public", "events") not in tables, "a partitioned parent has a data stream")
    check(("public", "events_2024") in tables and ("public", "ul") in tables, tables.keys())
    check(("public", "v") not in tables and ("public", "mv") not in tables, "views dumped as tables")
    cust = tables[("public", "customers")]
    check([c["name"] for c in cust["columns"]] == ["id", "email", "full_name", "note", "total", "born"],
          f"generated column not left out: {cust['columns']}")
    with open(os.path.join(ext, cust["stream"], "000001")) as f:
        first = f.readline()
    check(first == 'COPY "public"."customers" ("id", "email", "full_name", "note", "total", "born") FROM stdin;\n',
          f"COPY header: {first!r}")
    with open(os.path.join(ext, tables[("we ird", 'Ta"ble')]["stream"], "000001")) as f:
        check(f.readline() == 'COPY "we ird"."Ta""ble" ("k", "v", "b") FROM stdin;\n', "quoting")
    for sec in ("pre-data", "post-data", "drop"):
        text = "".join(open(p).read() for p in sorted(glob.glob(os.path.join(ext, "pg", sec, "*"))))
        check("\\restrict" not in text and "\\unrestrict" not in text, f"{sec} has \\restrict")
    drop = open(os.path.join(ext, "pg/drop/000001")).read()
    check("DROP TABLE IF EXISTS public.customers;" in drop and "CREATE" not in drop, drop)
    seqs = open(os.path.join(ext, "pg/sequences/000001")).read()
    check("""SELECT pg_catalog.setval('"public"."s1"', 77, true);""" in seqs, seqs)
    check("""SELECT pg_catalog.setval('"public"."s2"', 1, false);""" in seqs, seqs)
    with open(os.path.join(ext, "summary.json")) as f:
        summary = json.load(f)
    check(summary["streams"][cust["stream"]]["rows"] == 2000, summary["streams"][cust["stream"]])
    check(summary["totals"]["streams"] == len(summary["streams"]), summary["totals"])

    # 3. The README's hand restore: cat the streams in order into psql.
    pg["createdb"]("byhand")
    parts = []
    for pat in ("pg/pre-data/*", "pg/data/*/*", "pg/blobs/*", "pg/sequences/*", "pg/post-data/*"):
        parts += sorted(glob.glob(os.path.join(ext, pat)))
    script = b"".join(open(p, "rb").read() for p in parts)
    r = pg["run"]([os.path.join(pg["bindir"], "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   "-d", "byhand"], input=script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0, f"hand restore failed: {r.stderr.decode()}")
    a, b = db_fingerprint(pg, "src"), db_fingerprint(pg, "byhand")
    check(a == b, f"hand-restored data differs:\n{a}\n{b}")
    print("hand restore ok:", len(a), "relations compared")

    # 4. verify, ls.
    r = run([DSD, "verify", "file://" + archive])
    check(r.returncode == 0 and r.stdout.decode().startswith("OK"), f"verify: {r.stdout.decode()} {r.stderr.decode()}")
    r = run([DSD, "ls", "file://" + store])
    check(r.returncode == 0 and "a.tar.zst" in r.stdout.decode(), f"ls: {r.stdout.decode()}")

    # 5. Corruption. An uncompressed archive with one data byte changed:
    # tar still reads it, the sha256 of the stream no longer matches.
    plain = os.path.join(store, "p.tar")
    r = run([DSD, "dump", "--quiet", "--compression", "none", "--to", "file://" + plain],
            env=dsd_env({"DSD_SOURCE_URI": src_uri}))
    check(r.returncode == 0, r.stderr.decode())
    r = run([DSD, "verify", "file://" + plain])
    check(r.returncode == 0, r.stdout.decode() + r.stderr.decode())
    data = bytearray(open(plain, "rb").read())
    pos = data.find(b"u1000@x.org")
    check(pos > 0, "row not found in the plain archive")
    data[pos] = ord("v")
    bad = os.path.join(store, "bad.tar")
    open(bad, "wb").write(bytes(data))
    r = run([DSD, "verify", "file://" + bad])
    check(r.returncode == 1 and "MISMATCH" in r.stdout.decode() and "sha256" in r.stdout.decode(),
          f"corrupted data passed verify: {r.stdout.decode()} {r.stderr.decode()}")
    # A compressed archive with bytes changed in the middle or cut short.
    data = bytearray(open(archive, "rb").read())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0x55
    open(os.path.join(store, "bad.tar.zst"), "wb").write(bytes(data))
    r = run([DSD, "verify", "file://" + os.path.join(store, "bad.tar.zst")])
    check(r.returncode == 1, f"corrupted zstd passed verify: {r.stdout.decode()}")
    open(os.path.join(store, "cut.tar.zst"), "wb").write(open(archive, "rb").read()[:len(data) // 2])
    r = run([DSD, "verify", "file://" + os.path.join(store, "cut.tar.zst")])
    check(r.returncode == 1, f"truncated archive passed verify: {r.stdout.decode()}")
    for n in ("bad.tar", "bad.tar.zst", "cut.tar.zst", "p.tar"):
        os.unlink(os.path.join(store, n))

    # 6. gzip works with the standard tools.
    gz = os.path.join(store, "g.tar.gz")
    r = run([DSD, "dump", "--quiet", "--compression", "gzip", "--to", "file://" + gz],
            env=dsd_env({"DSD_SOURCE_URI": src_uri}))
    check(r.returncode == 0, r.stderr.decode())
    names = tar_list(gz, "-z")
    check(names[0] == "manifest.json" and names[-1] == "summary.json", names)
    os.unlink(gz)

    # 7. Failures leave nothing: wrong password, wrong plan, unknown table.
    before = store_files(store)
    bad_uri = pg["uri"]("src", pw="wrong-password-123")
    r = run([DSD, "dump", "--to", "file://" + store + "/f.tar.zst"],
            env=dsd_env({"DSD_SOURCE_URI": bad_uri}))
    err = r.stderr.decode()
    check(r.returncode == 1 and "dsd dump:" in err, f"bad password: {err}")
    check("wrong-password-123" not in err + r.stdout.decode(), f"password in output: {err}")
    check(store_files(store) == before, f"failed dump left files: {store_files(store)}")
    r = run([DSD, "dump", "--dialect", "mysql", "--to", "file://" + store + "/f.tar.zst"],
            env=dsd_env({"DSD_SOURCE_URI": src_uri}))
    check(r.returncode == 1 and "is a pg uri but the plan is mysql" in r.stderr.decode(),
          r.stderr.decode())
    r = run([DSD, "dump", "--to", "file://" + store + "/f.tar.zst"],
            env=dsd_env({}))
    check(r.returncode == 2 and "DSD_SOURCE_URI" in r.stderr.decode(), r.stderr.decode())
    check(store_files(store) == before, f"failed dump left files: {store_files(store)}")

    # 8. Cancel (SIGINT) in the middle of the data leaves nothing.
    pg["psql"]("src", "CREATE TABLE big AS SELECT i, md5(i::text) AS h, repeat('x', 200) AS pad "
                      "FROM generate_series(1, 1500000) i")
    p = subprocess.Popen([DSD, "dump", "--workers", "1", "--compression", "gzip",
                          "--to", "file://" + store + "/c.tar.gz"],
                         env=dsd_env({"DSD_SOURCE_URI": src_uri}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The argv of dsd has no password (it came from the environment).
    with open(f"/proc/{p.pid}/cmdline", "rb") as f:
        check(pw.encode() not in f.read(), "password in dsd's argv")
    lines = []
    while True:
        line = p.stderr.readline().decode()
        if not line:
            break
        lines.append(line)
        if "pre-data" in line:
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            break
    rest = p.communicate(timeout=60)[1].decode()
    err = "".join(lines) + rest
    check(p.returncode == 1 and "canceled" in err, f"cancel: rc={p.returncode} {err}")
    check(store_files(store) == before, f"canceled dump left files: {store_files(store)}")
    print("cancel ok")

    # 8b. A cancel reaches a dump that waits for a table lock held by another
    # session (the leader's LOCK TABLE blocks on the server).
    holder = subprocess.Popen([os.path.join(pg["bindir"], "psql"), "-X", "-q", "-At", "-d", src_uri],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    holder.stdin.write(b"BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
    holder.stdin.flush()
    check(holder.stdout.readline().strip() == b"locked", "the lock holder did not get its lock")
    p = subprocess.Popen([DSD, "dump", "--workers", "1", "--to", "file://" + store + "/l.tar.zst"],
                         env=dsd_env({"DSD_SOURCE_URI": src_uri}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    check(p.poll() is None, "the dump did not wait for the lock")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        err = p.communicate(timeout=15)[1].decode()
    finally:
        holder.stdin.write(b"ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    check(p.returncode == 1 and "canceled" in err, f"lock-wait cancel: rc={p.returncode} {err}")
    check(time.monotonic() - t0 < 10, "the cancel took longer than 10 s to reach the lock wait")
    check(store_files(store) == before, f"lock-wait cancel left files: {store_files(store)}")
    print("lock-wait cancel ok")

    # 8c. Summary totals count table rows only (not sequence positions or
    # large-object pieces).
    pg["createdb"]("rows")
    pg["psql"]("rows", "CREATE TABLE r (id serial PRIMARY KEY, v text); "
                       "INSERT INTO r (v) SELECT 'v' || g FROM generate_series(1, 1000) g; "
                       "SELECT lo_from_bytea(0, 'blob');")
    rows_archive = os.path.join(work, "rows.tar")
    r = run([DSD, "dump", "--quiet", "--compression", "none", "--to", "file://" + rows_archive],
            env=dsd_env({"DSD_SOURCE_URI": pg["uri"]("rows")}))
    check(r.returncode == 0, r.stderr.decode())
    with tarfile.open(rows_archive) as tf:
        summary = json.load(tf.extractfile("summary.json"))
    check(summary["totals"]["rows"] == 1000, f"summary totals: {summary['totals']}")
    print("row totals ok")

    # 9. A URI given with --source: dsd masks its password in argv at once.
    p = subprocess.Popen([DSD, "dump", "--quiet", "--workers", "1", "--source", src_uri,
                          "--to", "file://" + store + "/argv.tar.gz", "--compression", "gzip"],
                         env=dsd_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    masked = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and p.poll() is None:
        try:
            cmdline = open(f"/proc/{p.pid}/cmdline", "rb").read()
        except OSError:
            break
        if b"x" * len(pw) in cmdline:
            masked = pw.encode() not in cmdline
            break
        time.sleep(0.01)
    out, err = p.communicate(timeout=300)
    check(p.returncode == 0, err.decode())
    check(masked, "the password given with --source stayed visible in /proc/PID/cmdline")
    os.unlink(os.path.join(store, "argv.tar.gz"))
    print("PASS")


if __name__ == "__main__":
    main()
