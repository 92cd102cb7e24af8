"""One consistent snapshot across the dump's workers, under concurrent writes.

A writer commits, as fast as the server takes them, transactions that each
insert one row into table `a` and one row with the same id into table `b`
(and move an amount between two accounts of `acct`, so the sum never
changes). While it runs, dsd dumps with 3 workers (one table each, read at
the same time by different connections): as root (FLUSH TABLES WITH READ
LOCK), as an ordinary user (LOCK TABLES ... READ), and as a user with
SELECT only (one worker, whose single transaction is the snapshot). In every restored copy
`a` and `b` must hold exactly the same ids and the balance sum must be the
original one: each worker's snapshot is the same point in time. The writer
must also have committed during the dump (else the test proves nothing).
"""

import os
import subprocess
import threading
import time

import common
import mysql as H
from common import check


class Writer:
    def __init__(self, my, first_id):
        self.my = my
        self.first_id = first_id
        self.stop = threading.Event()
        self.proc = subprocess.Popen(my["client_argv"]("src") + ["-N", "-B"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=my["env"]())
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = self.first_id
        try:
            while not self.stop.is_set():
                batch = []
                for _ in range(50):
                    i += 1
                    batch.append(f"BEGIN; INSERT INTO a VALUES ({i}, 'w'); "
                                 f"UPDATE acct SET bal = bal - 1 WHERE id = 1; "
                                 f"INSERT INTO b VALUES ({i}, 'w'); "
                                 f"UPDATE acct SET bal = bal + 1 WHERE id = 2; COMMIT;\n")
                self.proc.stdin.write("".join(batch).encode())
                self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def close(self):
        self.stop.set()
        self.thread.join()
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        err = self.proc.stderr.read().decode()
        check(self.proc.wait() == 0, f"the writer failed: {err}")


def count(my, db, sql):
    return my["sql"](db, sql).strip()


def main():
    H.require_dsd()
    my = H.start_mariadb()
    my["createdb"]("src")
    my["sql"]("src", "CREATE TABLE a (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB; "
                     "CREATE TABLE b LIKE a; "
                     "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT) ENGINE=InnoDB; "
                     "INSERT INTO acct VALUES (1, 1000000000), (2, 0); "
                     "INSERT INTO a SELECT seq, REPEAT('x', 150) FROM seq_1_to_150000; "
                     "INSERT INTO b SELECT * FROM a;")
    my["create_user"]("reader", "rd-Snap-5", "src")
    # SELECT only: no LOCK TABLES either, so one worker, one transaction
    my["create_user"]("selonly", "sel-Snap-6")
    my["sql"](None, "GRANT SELECT ON src.* TO 'selonly'@'%'")
    work = common.tmpdir()
    for who, uri, mode in (("root", my["uri"]("src"), "flush tables with read lock"),
                           ("reader", my["uri"]("src", "reader", "rd-Snap-5"), "lock tables"),
                           ("selonly", my["uri"]("src", "selonly", "sel-Snap-6"),
                            "single transaction")):
        before = int(count(my, "src", "SELECT COUNT(*) FROM a"))
        w = Writer(my, int(count(my, "src", "SELECT MAX(id) FROM a")))
        time.sleep(0.5)  # the writer is committing
        path = os.path.join(work, f"{who}.tar.zst")
        r = H.dsd(["dump", "--workers", "3", "--to", "file://" + path],
                  {"DSD_SOURCE_URI": uri})
        time.sleep(0.2)
        w.close()
        check(r.returncode == 0, f"dump as {who} failed: {r.stderr}")
        check(f"snapshot ({mode})" in r.stderr, f"snapshot mode as {who}: {r.stderr[:300]}")
        check(("by 1 worker:" in r.stderr) == (mode == "single transaction"),
              f"workers as {who}: {r.stderr[:300]}")
        after = int(count(my, "src", "SELECT COUNT(*) FROM a"))
        db = f"copy_{who}"
        my["createdb"](db)
        r = H.dsd(["restore", "--quiet", "--from", "file://" + path],
                  {"DSD_TARGET_URI": my["uri"](db)})
        check(r.returncode == 0, f"restore failed: {r.stderr}")
        na = int(count(my, db, "SELECT COUNT(*) FROM a"))
        check(before < na < after,
              f"as {who}: the dump saw {na} rows of a; the writer did not commit during it "
              f"({before}..{after}) or the dump is not of one point in time")
        diff = count(my, db, "SELECT (SELECT COUNT(*) FROM a LEFT JOIN b USING (id) WHERE b.id IS NULL)"
                             " + (SELECT COUNT(*) FROM b LEFT JOIN a USING (id) WHERE a.id IS NULL)")
        check(diff == "0", f"as {who}: a and b differ by {diff} ids: the workers' snapshots differ")
        total = count(my, db, "SELECT SUM(bal) FROM acct")
        check(total == "1000000000", f"as {who}: balances sum to {total}")
        print(f"{who} ({mode}): {na - before} concurrent transactions in the snapshot, "
              f"a = b, balance kept")


if __name__ == "__main__":
    main()
