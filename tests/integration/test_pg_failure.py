"""PostgreSQL restore failures: each one names the object that failed and
the state the target is left in, and never shows a password.

 1. --no-clean into a target where a table of the dump exists with an
    incompatible definition: fails at that table, the target keeps its table
 2. the same with clean (the default): the table is replaced, data equal
 3. a row the target rejects (hand-built archive): fails at that table's
    data, says how many tables were loaded
 4. a summary that does not match a stream (corrupt archive): fails
 5. a table stream without its COPY trailer (truncated archive): fails
 6. a psql meta-command other than \\restrict in a schema stream: refused
 7. a wrong password: an authentication error without the password
 8. the compressed archive cut in the middle: fails, says so
"""

import os

import common
import pg as H
from common import check

SOURCE_SQL = """
CREATE TABLE public.a (id integer PRIMARY KEY, v text);
INSERT INTO public.a SELECT i, 'a' || i FROM generate_series(1, 100) AS i;
CREATE TABLE public.b (id integer PRIMARY KEY, a_id integer REFERENCES public.a, w text);
INSERT INTO public.b SELECT i, i, 'b' || i FROM generate_series(1, 50) AS i;
"""


def main():
    H.require_dsd()
    pg = H.start_postgres()
    pg["createdb"]("src")
    pg["psql"]("src", SOURCE_SQL)
    pw = "failure-Owner-pw9"
    pg["create_role"]("fowner", pw)
    secrets = [pg["password"], pw]
    outputs = []
    d = common.tmpdir()

    def target(db):
        pg["createdb"](db, owner="fowner")
        return {"DSD_TARGET_URI": pg["uri"](db, "fowner", pw)}

    def restore(url, env, *extra):
        r = H.dsd(["restore", "--quiet", *extra, "--from", url], env)
        outputs.append(r.stdout + r.stderr)
        return r

    url = f"file://{d}/dump.tar.zst"
    r = H.dsd(["dump", "--quiet", "--to", url], {"DSD_SOURCE_URI": pg["uri"]("src")})
    outputs.append(r.stdout + r.stderr)
    check(r.returncode == 0, f"dsd dump failed: {r.stderr}")

    # 1. incompatible table, clean off
    env = target("t1")
    pg["psql"]("t1", "CREATE TABLE public.b (x text); INSERT INTO public.b VALUES ('mine')",
               user="fowner", password=pw)
    r = restore(url, env, "--no-clean")
    check(r.returncode != 0, "restore --no-clean over an incompatible table succeeded")
    e = r.stderr
    check("table public.b" in e, f"the error does not name table public.b: {e}")
    check("already exists" in e, f"the error does not say why: {e}")
    check("part of the dump's schema" in e, f"the error does not give the state: {e}")
    check("HINT: " in e, f"no hint: {e}")
    kept = pg["psql"]("t1", "SELECT x FROM public.b", user="fowner", password=pw)
    check(kept.strip() == "mine", "the target's own table b was changed")
    print(f"1. no-clean over an incompatible table: {e.strip().splitlines()[-1][:300]}")

    # 2. the same target with clean: replaced
    r = restore(url, env)
    check(r.returncode == 0, f"clean restore over an incompatible table failed: {r.stderr}")
    H.compare_databases(pg, "src", "t1", "fowner", pw)
    print("2. clean over an incompatible table: replaced, equal")

    # 3. a row the target rejects, in the second table's stream
    streams, rows = H.pg_archive_streams(pg, "src")
    names = sorted(s for s in streams if s.startswith("pg/data/"))
    check(len(names) == 2, f"expected two data streams, got {names}")
    bad = dict(streams)
    bad[names[1]] = bad[names[1]].replace(b"\\.\n", b"999\t1\tx\textra\n\\.\n")
    rows3 = dict(rows)
    rows3[names[1]] += 1
    H.write_pg_archive(os.path.join(d, "badrow.tar.zst"), bad, rows3, interleave=1)
    r = restore(f"file://{d}/badrow.tar.zst", target("t3"))
    e = r.stderr
    check(r.returncode != 0, "restore of a rejected row succeeded")
    check("table public.b (data)" in e, f"the error does not name the table's data: {e}")
    check("1 of 2 tables" in e, f"the error does not say how many tables are loaded: {e}")
    print(f"3. rejected row: {e.strip().splitlines()[-1][:300]}")

    # 4. summary mismatch
    def corrupt(summary):
        summary["streams"][names[0]]["sha256"] = "0" * 64
    H.write_pg_archive(os.path.join(d, "badsum.tar.zst"), streams, rows, summary_edit=corrupt)
    r = restore(f"file://{d}/badsum.tar.zst", target("t4"))
    e = r.stderr
    check(r.returncode != 0, "restore with a wrong summary succeeded")
    check("does not match summary.json" in e and names[0] in e,
          f"the error does not name the mismatching stream: {e}")
    print(f"4. summary mismatch: {e.strip().splitlines()[-1][:300]}")

    # 5. truncated table stream
    cut = dict(streams)
    cut[names[0]] = cut[names[0]][:-3]
    H.write_pg_archive(os.path.join(d, "cut.tar.zst"), cut, rows)
    r = restore(f"file://{d}/cut.tar.zst", target("t5"))
    e = r.stderr
    check(r.returncode != 0, "restore of a truncated stream succeeded")
    check("public.a" in e and "trailer" in e, f"unexpected error: {e}")
    print(f"5. truncated stream: {e.strip().splitlines()[-1][:300]}")

    # 6. a meta-command that libpq cannot run
    meta = dict(streams)
    meta["pg/pre-data"] = b"\\restrict abc\nSET lock_timeout = 0;\n\\connect other\n" + \
        meta["pg/pre-data"]
    H.write_pg_archive(os.path.join(d, "meta.tar.zst"), meta, rows)
    r = restore(f"file://{d}/meta.tar.zst", target("t6"))
    e = r.stderr
    check(r.returncode != 0, "a \\connect meta-command was accepted")
    check("\\connect" in e and "meta-command" in e, f"unexpected error: {e}")
    check("abc" not in e, "the \\restrict key leaked into the error")
    print(f"6. meta-command: {e.strip().splitlines()[-1][:300]}")

    # 7. wrong password
    wrong = "Wrong-Password-123"
    r = restore(url, {"DSD_TARGET_URI": pg["uri"]("t1", "fowner", wrong)})
    e = r.stderr
    check(r.returncode != 0, "restore with a wrong password succeeded")
    check("authentication" in e, f"no authentication error: {e}")
    check(wrong not in e and wrong not in r.stdout, "the wrong password was printed")
    print(f"7. wrong password: {e.strip().splitlines()[-1][:300]}")

    # 8. the compressed archive cut in the middle (an interrupted download)
    whole = open(os.path.join(d, "dump.tar.zst"), "rb").read()
    with open(os.path.join(d, "half.tar.zst"), "wb") as f:
        f.write(whole[:len(whole) // 2])
    r = restore(f"file://{d}/half.tar.zst", target("t8"))
    e = r.stderr
    check(r.returncode != 0, "restore of a cut archive succeeded")
    check("archive" in e and ("truncated" in e.lower() or "cannot read" in e),
          f"the error does not say the archive is damaged: {e}")
    print(f"8. cut archive: {e.strip().splitlines()[-1][:300]}")

    for out in outputs:
        for s in secrets:
            check(s not in out, "a password appears in dsd's output")
    print("ok")


if __name__ == "__main__":
    main()
