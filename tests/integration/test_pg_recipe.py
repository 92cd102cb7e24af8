"""The by-hand restore recipe of a PostgreSQL dump, as the README gives it.

Restoring a dsd archive needs nothing but tar, zstd and psql: every pg
stream is a psql script, and their chunks concatenate in name order. This
test runs the recipe below, word for word, into an empty database owned by
a non-superuser, and compares the result with the source.

RECIPE (copied into the README; TARGET is a connection URI or a database
name, the password in PGPASSWORD or ~/.pgpass):

    mkdir restore && tar --zstd -xf dump.tar.zst -C restore
    cd restore && export LC_ALL=C &&
    for f in pg/pre-data/* pg/data/*/* pg/blobs/* pg/sequences/* pg/post-data/*; do
      if [ -f "$f" ]; then cat "$f"; fi
    done | psql -X -v ON_ERROR_STOP=1 --single-transaction -d "$TARGET"

Notes for the README: the glob order is the restore order (schema, table
data, large objects, sequence positions, then indexes, constraints and
triggers, so that triggers do not fire on the imported rows); LC_ALL=C makes
the order of the numbered chunks bytewise; the `[ -f ]` test skips the
pattern of a section the dump does not have; --single-transaction leaves the
target unchanged if any statement fails. The recipe restores into an EMPTY
database (createdb, or drop and create it again); to replace the dump's
objects in a database that holds other objects too, use `dsd restore`, which
runs pg/drop/* (pg_dump --clean statements) and steps over the errors that
pg_dump's own clean script causes (a partition's inherited primary key,
large objects it does not drop). A gzip archive (dump.tar.gz) extracts with
`tar -xzf`.
"""

import os
import shutil
import subprocess

import common
import pg as H
from common import check

FIXTURE = os.path.join(common.SOURCE_DIR, "tests", "integration", "fixtures",
                       "pg_fidelity.sql")

RECIPE = r"""
mkdir restore && tar --zstd -xf dump.tar.zst -C restore
cd restore && export LC_ALL=C &&
for f in pg/pre-data/* pg/data/*/* pg/blobs/* pg/sequences/* pg/post-data/*; do
  if [ -f "$f" ]; then cat "$f"; fi
done | psql -X -v ON_ERROR_STOP=1 --single-transaction -d "$TARGET"
"""


def main():
    H.require_dsd()
    if shutil.which("zstd") is None or shutil.which("tar") is None:
        print("tar or zstd missing, skipping")
        raise SystemExit(common.SKIP)
    pg = H.start_postgres()
    pg["createdb"]("src")
    pg["psql"]("src", open(FIXTURE).read())
    owner_pw = "recipe-Owner-pw1"
    pg["create_role"]("recipe_owner", owner_pw)
    pg["createdb"]("dst", owner="recipe_owner")

    d = common.tmpdir()
    r = H.dsd(["dump", "--quiet", "--to", f"file://{d}/dump.tar.zst"],
              {"DSD_SOURCE_URI": pg["uri"]("src")})
    check(r.returncode == 0, f"dsd dump failed: {r.stderr}")

    env = pg["env"]("recipe_owner", owner_pw)
    env["TARGET"] = "dst"
    # psql of the PostgreSQL 15 packages, as a user of the README would have
    env["PATH"] = pg["bindir"] + os.pathsep + env.get("PATH", "")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", RECIPE], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 0, f"the recipe failed ({r.returncode}):\n{r.stderr[-3000:]}")
    check("ERROR" not in r.stderr, f"psql reported errors:\n{r.stderr[-3000:]}")
    H.compare_databases(pg, "src", "dst", "recipe_owner", owner_pw)
    print("recipe into an empty non-superuser database: equal")

    # Into a target that already holds the dump's objects the recipe fails
    # and, thanks to --single-transaction, changes nothing.
    pg["psql"]("dst", "DELETE FROM app.big WHERE id < 10", user="recipe_owner",
               password=owner_pw)
    before = H.db_fingerprint(pg, "dst", "recipe_owner", owner_pw)
    again = RECIPE.replace("mkdir restore && tar --zstd -xf dump.tar.zst -C restore\n", "")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", again], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode != 0, "the recipe into a non-empty target succeeded")
    check("already exists" in r.stderr, f"unexpected failure: {r.stderr[-2000:]}")
    check(H.db_fingerprint(pg, "dst", "recipe_owner", owner_pw) == before,
          "the failed recipe changed the target")
    print("recipe into a non-empty target: fails, target unchanged")
    print("ok")


if __name__ == "__main__":
    main()
