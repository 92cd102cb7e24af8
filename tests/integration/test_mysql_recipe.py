"""The by-hand restore recipe of a MySQL / MariaDB dump, as the README gives it.

Restoring a dsd archive needs nothing but tar, zstd and the mysql client:
every mysql stream is a client script with its own session header, and the
chunks of a stream concatenate in name order. This test runs the recipe
below, word for word, into an empty database of a user with privileges on
that database only, and compares the result with the source (the same
comparison as test_mysql_fidelity.py).

RECIPE (copied into the README; TARGET_DB is the database name, the
connection comes from the usual client options or ~/.my.cnf, the password
from MYSQL_PWD or the option file, never the command line):

    mkdir restore && tar --zstd -xf dump.tar.zst -C restore
    cd restore && export LC_ALL=C &&
    for f in mysql/drop/* mysql/schema/* mysql/data/*/* mysql/post/*; do
      if [ -f "$f" ]; then cat "$f"; fi
    done | mysql $MYSQL_OPTS --default-character-set=utf8mb4 --comments "$TARGET_DB"

Notes for the README: the glob order is the restore order (drop of the
dump's objects, schema with routines and views, table data, then triggers and
events, so that no trigger fires on the imported rows); LC_ALL=C makes the
order of the numbered chunks bytewise; `[ -f ]` skips the pattern of a
section the dump does not have; --comments keeps comments inside routine
bodies as they were (the client strips them otherwise); the DELIMITER ;;
lines around routines and triggers are for the mysql client. The client
stops at the first error; the tables loaded before it stay (MySQL DDL is
not transactional): drop and create the database again and rerun.
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import mysql as H  # noqa: E402
from common import check  # noqa: E402
from test_mysql_fidelity import FIXTURE, compare  # noqa: E402

RECIPE = r"""
mkdir restore && tar --zstd -xf dump.tar.zst -C restore
cd restore && export LC_ALL=C &&
for f in mysql/drop/* mysql/schema/* mysql/data/*/* mysql/post/*; do
  if [ -f "$f" ]; then cat "$f"; fi
done | mysql $MYSQL_OPTS --default-character-set=utf8mb4 --comments "$TARGET_DB"
"""


def main():
    H.require_dsd()
    if shutil.which("zstd") is None or shutil.which("tar") is None:
        print("tar or zstd missing, skipping")
        raise SystemExit(common.SKIP)
    my = H.start_mariadb()
    my["createdb"]("src")
    my["sql"]("src", open(FIXTURE).read())
    my["createdb"]("dst")
    my["create_user"]("recipe_user", "recipe-Pw-3z", "dst")

    d = common.tmpdir()
    r = H.dsd(["dump", "--quiet", "--to", f"file://{d}/dump.tar.zst"],
              {"DSD_SOURCE_URI": my["uri"]("src")})
    check(r.returncode == 0, f"dsd dump failed: {r.stderr}")

    env = my["env"]("recipe-Pw-3z")
    env["TARGET_DB"] = "dst"
    env["MYSQL_OPTS"] = "--protocol=TCP -h %s -P %d -u recipe_user" % (
        my["host"], my["port"])
    # the client of the MariaDB packages, under the name the README uses
    bindir = os.path.join(d, "bin")
    os.mkdir(bindir)
    os.symlink(my["client"], os.path.join(bindir, "mysql"))
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", RECIPE], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 0, f"the recipe failed ({r.returncode}):\n{r.stderr[-3000:]}")
    check("ERROR" not in r.stderr, f"the client reported errors:\n{r.stderr[-3000:]}")
    compare(my, "src", "dst", "recipe")
    check(my["sql"]("dst", "SELECT msg FROM audit").strip() == "kept",
          "a trigger fired during the recipe")
    print("recipe into an empty database of an ordinary user: equal")

    # The recipe runs the drop section first: run again over the restored
    # database, it replaces the objects and gives the same result.
    shutil.rmtree(os.path.join(d, "restore"))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", RECIPE], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 0, f"the recipe over a restored database failed:\n{r.stderr[-3000:]}")
    compare(my, "src", "dst", "recipe again")
    print("recipe over the restored database: equal")


if __name__ == "__main__":
    main()
