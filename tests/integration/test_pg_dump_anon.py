"""dsd dump --anonymize against a real PostgreSQL 15.

The archive must not contain the original values of anonymized columns,
equal values must stay equal across tables (the join survives), a UNIQUE
column stays unique (the hand restore recreates the unique index), the salt
appears nowhere in the archive, and a rule naming a missing table or column
fails before anything is written to the store.
"""

import glob
import json
import os
import subprocess

import common
from common import check
from pg import start_postgres

DSD = common.DSD_BIN

SCHEMA = r"""
CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE NOT NULL, full_name text,
                        ssn text, born date);
INSERT INTO customers
  SELECT i, 'person' || i || '@realmail.org', 'Real Person ' || i, '123-45-' || lpad(i::text, 4, '0'),
         '1980-01-01'::date + i
  FROM generate_series(1, 500) i;
CREATE TABLE orders (id int PRIMARY KEY, customer_email text NOT NULL, amount numeric(8,2));
INSERT INTO orders SELECT i, 'person' || (i % 500 + 1) || '@realmail.org', i FROM generate_series(1, 2000) i;
CREATE TABLE events (id int, email text, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO events SELECT i, 'person' || (i % 500 + 1) || '@realmail.org', '2023-06-01'::date + i
  FROM generate_series(1, 300) i;
"""

SALT = "a-user-salt-that-must-stay-secret"


def run(argv, env=None, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)


def main():
    pg = start_postgres()
    pg["createdb"]("src")
    pg["psql"]("src", SCHEMA)
    work = common.tmpdir()
    store = os.path.join(work, "store")
    os.mkdir(store)
    env = dict(os.environ, DSD_SOURCE_URI=pg["uri"]("src"))

    rules = {"salt": SALT, "tables": {
        "public.customers": {"email": "email", "full_name": "name",
                             "ssn": {"strategy": "mask", "keep_last": 4}},
        "public.orders": {"customer_email": "email"},
        # rules for a partitioned table apply to its partitions
        "public.events": {"email": "email"}}}
    rules_path = os.path.join(work, "rules.json")
    json.dump(rules, open(rules_path, "w"))
    archive = os.path.join(store, "anon.tar.zst")
    r = run([DSD, "dump", "--quiet", "--anonymize", rules_path, "--to", "file://" + archive], env=env)
    check(r.returncode == 0, f"anonymized dump failed: {r.stderr.decode()}")
    check(SALT not in r.stdout.decode() + r.stderr.decode(), "salt in output")

    ext = os.path.join(work, "x")
    os.mkdir(ext)
    check(run(["tar", "--zstd", "-xf", archive], cwd=ext).returncode == 0, "extract")
    everything = b"".join(open(p, "rb").read() for p in glob.glob(os.path.join(ext, "**"), recursive=True)
                          if os.path.isfile(p))
    check(b"realmail.org" not in everything, "an original email is in the archive")
    check(b"Real Person" not in everything, "an original name is in the archive")
    check(b"123-45-" not in everything, "an original ssn is in the archive")
    check(SALT.encode() not in everything, "the salt is in the archive")
    manifest = json.load(open(os.path.join(ext, "manifest.json")))
    check(manifest["anonymize"]["tables"]["public.customers"]["email"] == "email", manifest["anonymize"])
    check("salt" not in json.dumps(manifest["anonymize"]), manifest["anonymize"])
    check(manifest.get("anonymize_salt") == "user", manifest.get("anonymize_salt"))
    r = run([DSD, "verify", "file://" + archive])
    check(r.returncode == 0, r.stdout.decode() + r.stderr.decode())

    # Hand restore; the UNIQUE index on email and the primary keys are
    # created after the data (post-data), so distinct stays distinct.
    pg["createdb"]("dst")
    parts = []
    for pat in ("pg/pre-data/*", "pg/data/*/*", "pg/blobs/*", "pg/sequences/*", "pg/post-data/*"):
        parts += sorted(glob.glob(os.path.join(ext, pat)))
    script = b"".join(open(p, "rb").read() for p in parts)
    r = pg["run"]([os.path.join(pg["bindir"], "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "dst"],
                  input=script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0, f"restore of the anonymized dump failed: {r.stderr.decode()}")
    q = pg["psql"]
    check(q("dst", "SELECT count(*) FROM customers").strip() == "500", "customers count")
    joined = q("dst", "SELECT count(*) FROM orders o JOIN customers c ON c.email = o.customer_email").strip()
    check(joined == "2000", f"join lost rows after anonymization: {joined}")
    check(q("dst", "SELECT count(DISTINCT email) FROM customers").strip() == "500", "emails collided")
    joined = q("dst", "SELECT count(*) FROM events e JOIN customers c ON c.email = e.email").strip()
    check(joined == "300", f"partition rows not anonymized like the others: {joined}")
    ssn = q("dst", "SELECT ssn FROM customers WHERE id = 42").strip()
    check(ssn.endswith("0042") and ssn.startswith("*"), f"mask: {ssn}")
    check(q("dst", "SELECT sum(amount) FROM orders") == q("src", "SELECT sum(amount) FROM orders"),
          "a column without a rule changed")

    # Deterministic with a user salt: a second dump gives the same emails.
    archive2 = os.path.join(store, "anon2.tar.zst")
    r = run([DSD, "dump", "--quiet", "--anonymize", rules_path, "--to", "file://" + archive2], env=env)
    check(r.returncode == 0, r.stderr.decode())
    ext2 = os.path.join(work, "y")
    os.mkdir(ext2)
    run(["tar", "--zstd", "-xf", archive2], cwd=ext2)
    for t in manifest["pg"]["tables"]:
        a = open(os.path.join(ext, t["stream"], "000001"), "rb").read()
        b = open(os.path.join(ext2, t["stream"], "000001"), "rb").read()
        check(a == b, f"table {t['name']}: anonymized output differs between dumps with one salt")
    os.unlink(archive2)

    # Rules that do not match the source fail before anything is stored.
    before = sorted(os.listdir(store))
    for bad, words in (({"tables": {"public.nope": {"x": "null"}}}, "public.nope"),
                       ({"tables": {"public.customers": {"nocol": "null"}}}, "nocol"),
                       ({"tables": {"public.customers": {"email": "masc"}}}, "masc")):
        json.dump(bad, open(rules_path, "w"))
        r = run([DSD, "dump", "--anonymize", rules_path, "--to", "file://" + store + "/bad.tar.zst"], env=env)
        err = r.stderr.decode()
        check(r.returncode == 1 and words in err and "dsd dump:" in err, f"bad rules: {err}")
        check(sorted(os.listdir(store)) == before, f"bad rules left files: {os.listdir(store)}")
    print("PASS")


if __name__ == "__main__":
    main()
