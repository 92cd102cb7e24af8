"""Fidelity of the mysql dialect against a real MariaDB.

The fixture (fixtures/mysql_fidelity.sql) holds every awkward type and
object: utf8mb4 with emoji, binary columns with every byte value, JSON,
ENUM/SET, DECIMAL(30,10), BIT, DATETIME(6) and TIMESTAMP(6) inserted with
session time zone +05:30, VIRTUAL and STORED generated columns,
AUTO_INCREMENT positions after deletes, circular foreign keys, triggers that
would change or refuse rows if they fired during the import, views on views,
a procedure, a function, an event, reserved-word and backquote-containing
identifiers, an empty table and a table without a key.

It is dumped twice (as root, which takes FLUSH TABLES WITH READ LOCK, and as
a user with privileges on the source database only, which falls back to
LOCK TABLES; then rewritten with 1, 2, 3 and 997-byte chunks), imported into an empty database as a NON-root user with all
privileges on that database only, and compared table by table: every row
with HEX() of every column (ordered), SHOW CREATE TABLE exactly (including
AUTO_INCREMENT: the position must survive, so nothing is normalised), and
views, routines, triggers and events through SHOW CREATE with the DEFINER
clause normalised (the importing user owns what it creates, as pg_dump
--no-owner gives). A second import over the first (clean, the default)
must give the same result; --no-clean over existing objects must fail.
"""

import json
import os
import re
import subprocess
import tarfile

import common
import mysql as H
from common import check

FIXTURE = os.path.join(common.SOURCE_DIR, "tests", "integration", "fixtures",
                       "mysql_fidelity.sql")


def tables_of(my, db):
    out = my["sql"](db, "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                        "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME")
    base, views = [], []
    for line in out.splitlines():
        name, kind = line.split("\t")
        (views if kind == "VIEW" else base).append(name)
    return base, views


def table_rows(my, db, table):
    cols = my["sql"](db, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
                         "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
                     % H.quote_lit(table)).splitlines()
    exprs = ["COALESCE(HEX(%s), 'NULL')" % H.quote_ident(c) for c in cols]
    q = "SET time_zone = '+00:00'; SELECT CONCAT_WS('|', %s) AS r FROM %s ORDER BY r" % (
        ", ".join(exprs), H.quote_ident(table))
    return my["sql"](db, q)


def definer_free(text):
    return re.sub(r"DEFINER=`[^`]*`@`[^`]*` ", "", text)


def show_create(my, db, kind, name, col):
    out = my["sql"](db, "SHOW CREATE %s %s" % (kind, H.quote_ident(name)))
    # -r -B output: fields separated by tabs, newlines inside values escaped
    # by the client as \n, so one line per row.
    return definer_free(out.split("\t")[col])


def describe(my, db):
    """Everything compared, as a dict of name -> text."""
    d = {}
    base, views = tables_of(my, db)
    for t in base:
        d["rows " + t] = table_rows(my, db, t)
        d["create " + t] = show_create(my, db, "TABLE", t, 1)
    for v in views:
        d["view " + v] = show_create(my, db, "VIEW", v, 1)
        d["view rows " + v] = table_rows(my, db, v)
    for line in my["sql"](db, "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                              "WHERE ROUTINE_SCHEMA = DATABASE()").splitlines():
        kind, name = line.split("\t")
        d["%s %s" % (kind, name)] = show_create(my, db, kind, name, 2)
    for name in my["sql"](db, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                              "WHERE TRIGGER_SCHEMA = DATABASE()").splitlines():
        d["trigger " + name] = show_create(my, db, "TRIGGER", name, 2)
    for name in my["sql"](db, "SELECT EVENT_NAME FROM information_schema.EVENTS "
                              "WHERE EVENT_SCHEMA = DATABASE()").splitlines():
        d["event " + name] = show_create(my, db, "EVENT", name, 3)
    return d


def compare(my, src, dst, what):
    a, b = describe(my, src), describe(my, dst)
    check(sorted(a) == sorted(b), f"{what}: objects differ: {sorted(set(a) ^ set(b))}")
    for k in sorted(a):
        check(a[k] == b[k], f"{what}: {k} differs:\n--- source\n{a[k][:3000]}\n--- target\n"
                            f"{b[k][:3000]}")
    return a


def manifest_of(path):
    with tarfile.open(path, "r:*") if not path.endswith(".zst") else None or _zst(path) as t:
        return json.load(t.extractfile("manifest.json"))


def _zst(path):
    # tarfile cannot read zstd: extract the manifest with tar.
    out = subprocess.run(["tar", "--zstd", "-xOf", path, "manifest.json"],
                         stdout=subprocess.PIPE, check=True).stdout
    return _Fake(out)


class _Fake:
    def __init__(self, data):
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def extractfile(self, name):
        import io
        return io.BytesIO(self.data)


def main():
    H.require_dsd()
    my = H.start_mariadb()
    my["createdb"]("src")
    my["sql"]("src", open(FIXTURE).read())
    work = common.tmpdir()

    # Sanity of the fixture itself: what the comparison relies on.
    check(my["sql"]("src", "SET time_zone='+00:00'; SELECT ts FROM types WHERE id = 1").strip()
          == "2024-02-29 18:29:59.654321", "fixture: TIMESTAMP not inserted at +05:30")
    check(my["sql"]("src", "SELECT LENGTH(vbin) FROM types WHERE txt = 'allbytes'").strip()
          == "256", "fixture: the every-byte row is missing")

    # 1. dump as root (FLUSH TABLES WITH READ LOCK), 3 workers
    d1 = os.path.join(work, "root.tar.zst")
    r = H.dsd(["dump", "--workers", "3", "--to", "file://" + d1],
              {"DSD_SOURCE_URI": my["uri"]("src")})
    check(r.returncode == 0, f"dump as root failed: {r.stderr}")
    check(my["password"] not in r.stderr + r.stdout, "the password was printed")
    m = manifest_of(d1)
    check(m["dialect"] == "mysql" and m["mysql"]["snapshot"] == "flush tables with read lock",
          f"manifest: {m.get('mysql', {}).get('snapshot')}")
    check(sorted(t["name"] for t in m["mysql"]["tables"]) ==
          ["a_parent", "audit", "b_child", "empty_table", "nokey", "select", "types"],
          f"manifest tables: {[t['name'] for t in m['mysql']['tables']]}")
    types_cols = [c["name"] for t in m["mysql"]["tables"] if t["name"] == "types"
                  for c in t["columns"]]
    check("gen_v" not in types_cols and "gen_s" not in types_cols,
          "generated columns are in the INSERT column list")

    # 2. import as a non-root user with privileges on the target only
    my["createdb"]("dst")
    my["create_user"]("importer", "imp-Pw-9x", "dst")
    tenv = {"DSD_TARGET_URI": my["uri"]("dst", "importer", "imp-Pw-9x")}
    r = H.dsd(["restore", "--from", "file://" + d1], tenv)
    check(r.returncode == 0, f"restore failed: {r.stderr}")
    check("imp-Pw-9x" not in r.stderr + r.stdout, "the target password was printed")
    desc = compare(my, "src", "dst", "root dump")
    check("AUTO_INCREMENT=7" in desc["create types"] and "AUTO_INCREMENT=4" in desc["create select"],
          "AUTO_INCREMENT positions: " + desc["create types"][-200:])
    # Triggers did not fire: audit holds only its own row, nokey is as it was.
    check(my["sql"]("dst", "SELECT msg FROM audit").strip() == "kept", "a trigger fired")
    check(my["sql"]("dst", "SET time_zone='+00:00'; SELECT ts FROM types WHERE id = 1").strip()
          == "2024-02-29 18:29:59.654321", "TIMESTAMP moved")
    check(my["sql"]("dst", "SELECT HEX(vbin) FROM types WHERE txt = 'allbytes'").strip() ==
          "".join("%02X" % i for i in range(256)), "binary values changed")
    check(my["sql"]("dst", "SELECT emoji FROM types WHERE id = 1").strip() == "héllo 🐘 wörld 🎉",
          "utf8mb4 changed")
    # The restored objects work: the trigger fires now, the function runs.
    check(my["sql"]("dst", "SELECT add_one(41)").strip() == "42", "function")
    my["sql"]("dst", "INSERT INTO nokey VALUES (7, 'n')", user="importer", pw="imp-Pw-9x")
    check(my["sql"]("dst", "SELECT b FROM nokey WHERE a = 7").strip() == "trigger:n",
          "the restored trigger does not fire")
    print("root dump -> non-root import: equal")

    # 3. clean import over the (now changed) target gives the source again
    r = H.dsd(["restore", "--from", "file://" + d1], tenv)
    check(r.returncode == 0, f"clean restore failed: {r.stderr}")
    compare(my, "src", "dst", "clean re-import")
    print("clean re-import: equal")

    # 4. --no-clean over existing objects fails and names the object
    r = H.dsd(["restore", "--no-clean", "--from", "file://" + d1], tenv)
    check(r.returncode != 0, "--no-clean over existing tables succeeded")
    check("already exists" in r.stderr, f"--no-clean error: {r.stderr[-500:]}")

    # 5. dump as an ordinary user (no RELOAD): LOCK TABLES
    my["create_user"]("reader", "rd-Pw-7y", "src")
    # Without it the dump fails with a hint: routine bodies are hidden from
    # users who are not their definer.
    r = H.dsd(["dump", "--to", "file://" + os.path.join(work, "refused.tar.zst")],
              {"DSD_SOURCE_URI": my["uri"]("src", "reader", "rd-Pw-7y")})
    check(r.returncode != 0 and "HINT: the dump user must be its definer" in r.stderr,
          f"dump without access to routine bodies: {r.returncode} {r.stderr[-400:]}")
    check(not os.path.exists(os.path.join(work, "refused.tar.zst")), "a failed dump left a file")
    my["sql"](None, "GRANT SELECT ON mysql.proc TO 'reader'@'%'")
    d2 = os.path.join(work, "user.tar.zst")
    r = H.dsd(["dump", "--workers", "2", "--to", "file://" + d2],
              {"DSD_SOURCE_URI": my["uri"]("src", "reader", "rd-Pw-7y")})
    check(r.returncode == 0, f"dump as an ordinary user failed: {r.stderr}")
    m = manifest_of(d2)
    check(m["mysql"]["snapshot"] == "lock tables", f"snapshot: {m['mysql']['snapshot']}")
    my["createdb"]("dst2")
    my["create_user"]("importer2", "imp2-Pw", "dst2")
    r = H.dsd(["restore", "--from", "file://" + d2],
              {"DSD_TARGET_URI": my["uri"]("dst2", "importer2", "imp2-Pw")})
    check(r.returncode == 0, f"restore of the user dump failed: {r.stderr}")
    compare(my, "src", "dst2", "user dump")
    print("ordinary-user dump (lock tables) -> import: equal")

    # 6. the same archive cut into 1, 2, 3 and 997-byte chunks, data streams
    # interleaved: chunk boundaries fall inside every kind of token (quotes,
    # escapes, comments, DELIMITER lines, the delimiter itself)
    for size in (1, 2, 3, 997):
        hand = H.rechunk_archive(d1, os.path.join(work, f"chunks{size}.tar.zst"), size)
        db = f"chunks{size}"
        my["createdb"](db)
        my["sql"](None, "GRANT ALL PRIVILEGES ON %s.* TO 'importer'@'%%'" % H.quote_ident(db))
        r = H.dsd(["restore", "--quiet", "--from", "file://" + hand],
                  {"DSD_TARGET_URI": my["uri"](db, "importer", "imp-Pw-9x")})
        check(r.returncode == 0, f"restore of the {size}-byte chunk archive failed: {r.stderr}")
        compare(my, "src", db, f"{size}-byte chunks")
    print("archives with 1, 2, 3 and 997-byte chunks: equal")


if __name__ == "__main__":
    main()
