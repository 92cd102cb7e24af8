"""PostgreSQL dump -> restore fidelity, through the dsd CLI.

The source is tests/integration/fixtures/pg_fidelity.sql (every common
PostgreSQL feature: quoted identifiers, enums, composites, domains, arrays,
json, bytea with every byte, NaN/Infinity, generated and identity columns,
sequences, partitions, inheritance, circular foreign keys, triggers that
would break an import if they fired, views, materialized views, indexes,
comments, large objects, unlogged and empty tables). The target is a
database OWNED BY A NON-SUPERUSER ROLE, which dsd connects as, as a Cloud
Foundry service key would.

Checks:
 1. dump, restore into the empty target: rows of every table, sequence
    positions, large objects and `pg_dump -s` output are equal
 2. restore again (clean, the default) into the same target after changing
    it: succeeds, equal again, and objects that are not in the dump stay
 3. restore with --no-clean into the non-empty target: fails, names the
    object, says the target is unchanged, and leaves it unchanged
 4. a hand-built archive of the same database with tiny chunks, data
    streams interleaved three at a time and \\restrict lines kept restores
    equal too (chunk boundaries inside every kind of token)
 4a. a target where a superuser created the dump's extension: the
    errors pg_restore would step over are stepped over and logged
 4b. the same with 1, 2 and 3-byte chunks, on a small database with
    semicolons, quotes, dollar quotes and "\." in every place
 5. no password appears in any output
"""

import os
import sys

import common
import pg as H
from common import check

FIXTURE = os.path.join(common.SOURCE_DIR, "tests", "integration", "fixtures",
                       "pg_fidelity.sql")


# A small database whose scripts and rows hold every token the splitter and
# the COPY trailer detection must get right, for the tiny-chunk archives.
TINY_SQL = r"""
CREATE SCHEMA "we;ird";
CREATE TABLE "we;ird"."t;1" (id int PRIMARY KEY, t text, "c""q" text);
INSERT INTO "we;ird"."t;1" VALUES
  (1, E'\\.', 'a'), (2, E'x\\.\n\\.\n', ';'), (3, E'\t\r\n\\', '$$'), (4, '', NULL),
  (5, E'\\', E'\\\\.');
CREATE FUNCTION "we;ird".f(a int) RETURNS text LANGUAGE plpgsql AS $body$
BEGIN
  /* a ; inside /* a nested */ comment */
  RETURN 'it''s; ' || $x$;$x$ || E'\';' || a; -- ; here too
END
$body$;
CREATE FUNCTION "we;ird".g(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT i; END;
COMMENT ON TABLE "we;ird"."t;1" IS 'semi; colon '' quote';
CREATE VIEW "we;ird".v AS SELECT id, "we;ird".f(id) FROM "we;ird"."t;1";
CREATE TABLE "we;ird".empty (a int);
"""


def main():
    H.require_dsd()
    pg = H.start_postgres()
    pg["createdb"]("src")
    pg["psql"]("src", open(FIXTURE).read())
    owner_pw = "owner-Secret-1234"
    pg["create_role"]("app_owner", owner_pw)
    pg["createdb"]("dst", owner="app_owner")
    secrets = [pg["password"], owner_pw]
    src_env = {"DSD_SOURCE_URI": pg["uri"]("src")}
    dst_env = {"DSD_TARGET_URI": pg["uri"]("dst", "app_owner", owner_pw)}
    d = common.tmpdir()
    url = f"file://{d}/dump.tar.zst"
    outputs = []

    def run(args, env):
        r = H.dsd(args, env)
        outputs.append(r.stdout + r.stderr)
        return r

    # 1. dump and restore into an empty database owned by a non-superuser
    r = run(["dump", "--quiet", "--to", url], src_env)
    check(r.returncode == 0, f"dsd dump failed ({r.returncode}): {r.stderr}")
    check(os.path.getsize(os.path.join(d, "dump.tar.zst")) > 0, "empty archive")
    r = run(["restore", "--quiet", "--from", url], dst_env)
    check(r.returncode == 0, f"dsd restore failed ({r.returncode}): {r.stderr}")
    H.compare_databases(pg, "src", "dst", "app_owner", owner_pw)
    # the triggers exist again and work after the import
    bad = pg["psql"]("dst", "INSERT INTO app.closed VALUES (3, 'x')", user="app_owner",
                     password=owner_pw, check=False)
    rows = pg["psql"]("dst", "SELECT count(*) FROM app.closed", user="app_owner",
                      password=owner_pw)
    check(rows.strip() == "2", f"the refuse_insert trigger did not fire after import: {rows}")
    # objects are owned by the target role, not by the source's superuser
    owners = pg["psql"]("dst", "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'")
    check(owners.split() == ["app_owner"], f"restored objects owned by {owners.split()}")
    print("1. restore into an empty non-superuser database: equal")

    # 2. again, clean (the default), into the changed target
    pg["psql"]("dst", """
        DELETE FROM app.big WHERE id < 100;
        INSERT INTO "Mixed Case"."Table" VALUES (999, 'extra', 0);
        DROP TABLE app.empty;
        ALTER TABLE app.words ADD COLUMN extra int;
        SELECT setval('app.seq_called', 1);
        SELECT lo_unlink(424242);
        CREATE TABLE public.not_in_dump (x int);
        INSERT INTO public.not_in_dump VALUES (1);
    """, user="app_owner", password=owner_pw)
    r = run(["restore", "--quiet", "--from", url], dst_env)
    check(r.returncode == 0, f"second restore (clean) failed: {r.stderr}")
    left = pg["psql"]("dst", "SELECT x FROM public.not_in_dump", user="app_owner",
                      password=owner_pw)
    check(left.strip() == "1", "clean dropped a table that is not in the dump")
    pg["psql"]("dst", "DROP TABLE public.not_in_dump", user="app_owner", password=owner_pw)
    H.compare_databases(pg, "src", "dst", "app_owner", owner_pw)
    print("2. restore again with clean: replaced, equal; other objects kept")

    # 3. --no-clean into the non-empty target fails without changing it
    pg["psql"]("dst", "INSERT INTO app.words VALUES (3, 'marker')", user="app_owner",
               password=owner_pw, check=False)
    before = H.db_fingerprint(pg, "dst", "app_owner", owner_pw)
    r = run(["restore", "--quiet", "--no-clean", "--from", url], dst_env)
    check(r.returncode != 0, "restore --no-clean into a non-empty target succeeded")
    err = r.stderr
    check("already exists" in err, f"the error does not say what exists: {err}")
    check("restore failed at schema" in err or "restore failed at" in err,
          f"the error does not name the object: {err}")
    check("unchanged" in err, f"the error does not say the target is unchanged: {err}")
    check("HINT: " in err and "clean" in err, f"no hint about clean: {err}")
    after = H.db_fingerprint(pg, "dst", "app_owner", owner_pw)
    check(before == after, "a failed --no-clean restore changed the target")
    print(f"3. --no-clean into a non-empty target fails: {err.strip()[:200]}")

    # 4. a hand-built archive: tiny chunks, interleaved streams, \restrict kept
    pg["createdb"]("dst2", owner="app_owner")
    streams, rows = H.pg_archive_streams(pg, "src", keep_restrict=True, blob_piece=3000)
    H.write_pg_archive(os.path.join(d, "hand.tar.zst"), streams, rows,
                       chunk_size=997, interleave=3)
    r = run(["restore", "--quiet", "--from", f"file://{d}/hand.tar.zst"],
            {"DSD_TARGET_URI": pg["uri"]("dst2", "app_owner", owner_pw)})
    check(r.returncode == 0, f"restore of the hand-built archive failed: {r.stderr}")
    H.compare_databases(pg, "src", "dst2", "app_owner", owner_pw)
    print("4. hand-built archive with 997-byte chunks, 3 interleaved streams: equal")

    # 4a. a target where a superuser created the dump's extension: the
    # target role may neither drop it nor comment on it; pg_restore steps
    # over those errors and so does dsd, with a line in the log
    pg["createdb"]("dst3", owner="app_owner")
    pg["psql"]("dst3", "CREATE EXTENSION pgcrypto")
    r = run(["restore", "--from", url],
            {"DSD_TARGET_URI": pg["uri"]("dst3", "app_owner", owner_pw)})
    check(r.returncode == 0, f"restore over a superuser's extension failed: {r.stderr}")
    check("ignored an error" in r.stderr and "extension" in r.stderr.lower(),
          f"the ignored extension errors are not logged: {r.stderr}")
    H.compare_databases(pg, "src", "dst3", "app_owner", owner_pw)
    print("4a. target with a superuser's extension: errors stepped over, equal")

    # 4b. chunks of 1, 2 and 3 bytes: every boundary falls everywhere once
    # (inside quotes, comments, dollar quotes, the COPY header and trailer)
    pg["createdb"]("tiny")
    pg["psql"]("tiny", TINY_SQL)
    streams, rows = H.pg_archive_streams(pg, "tiny", keep_restrict=True)
    for size in (1, 2, 3):
        db = f"tiny{size}"
        pg["createdb"](db, owner="app_owner")
        path = os.path.join(d, f"tiny{size}.tar.zst")
        H.write_pg_archive(path, streams, rows, chunk_size=size, interleave=2)
        r = run(["restore", "--quiet", "--from", f"file://{path}"],
                {"DSD_TARGET_URI": pg["uri"](db, "app_owner", owner_pw)})
        check(r.returncode == 0, f"restore with {size}-byte chunks failed: {r.stderr}")
        H.compare_databases(pg, "tiny", db, "app_owner", owner_pw)
    print("4b. archives with 1, 2 and 3-byte chunks: equal")

    # 5. secrets
    for out in outputs:
        for s in secrets:
            check(s not in out, "a password appears in dsd's output")
    print("5. no password in any output")
    print("ok")


if __name__ == "__main__":
    main()
