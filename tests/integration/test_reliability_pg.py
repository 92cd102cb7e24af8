"""Reliability of `dsd serve` against a real PostgreSQL (issue 9):
  - the source connection dropped mid-COPY (pg_terminate_backend from
    another session during the dump of a big table): the operation fails
    with a description that names the cause, and nothing is left in the
    store;
  - a broker killed (SIGKILL) mid-import (update with target_uri): a second
    broker on the same store finds the expired lease, fails the update with
    a description saying what state the target database is in, and the
    instance stays usable (bind, another update).
Skipped (77) when PostgreSQL or the pg dialect is not available."""

import os
import signal
import sys
import time

import common
from broker import PLANS, SERVICE_ID, start_broker
from pg import start_postgres

check = common.check


def wait_progress(b, iid, words, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, res, _ = b.last_operation(iid)
        check(st == 200, f"last_operation {iid}: {st}")
        if res["state"] != "in progress":
            if "not built yet" in res["description"]:
                print(f"skipping: {res['description']}", file=sys.stderr)
                sys.exit(common.SKIP)
            raise AssertionError(f"{iid} ended before it could be interrupted: {res}")
        if any(w in res["description"] for w in words):
            return res
        time.sleep(0.05)
    raise AssertionError(f"{iid} never reported {words}")


def store_files(store, iid):
    found = []
    for root, _, files in os.walk(store):
        for f in files:
            p = os.path.join(root, f)
            if iid in p and "/dumps/" in p:
                found.append(p)
    return found


def main():
    if not os.path.exists(common.DSD_BIN):
        sys.exit(common.SKIP)
    pg = start_postgres()
    pg["createdb"]("big")
    pg["psql"]("big", "CREATE TABLE t (id int, a text, b text);"
                      "INSERT INTO t SELECT g, md5(g::text), repeat(md5(g::text), 3)"
                      " FROM generate_series(1, 2000000) g;")
    src = pg["uri"]("big")
    env = {"DSD_LEASE_TTL": "3"}
    a = start_broker(env)
    store = a.storage_url[len("file://"):]

    # 1. the source connection is terminated mid-COPY
    st, body, _ = a.provision("term-src", {"source_uri": src})
    check(st == 202, f"provision: {st} {body}")
    wait_progress(a, "term-src", ["dumping"])
    killed = pg["psql"]("postgres",
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = 'big' AND pid <> pg_backend_pid()").strip()
    check(int(killed) >= 1, f"no backend to terminate ({killed})")
    st, res = a.wait_operation("term-src", timeout=120)
    check(st == 200 and res["state"] == "failed", f"after pg_terminate_backend: {res}")
    desc = res["description"].lower()
    check(any(w in desc for w in ("terminat", "connection", "server closed", "administrator")),
          f"the description does not name the cause: {res['description']}")
    check(store_files(store, "term-src") == [], f"left in the store: {store_files(store, 'term-src')}")
    st, body, _ = a.deprovision("term-src")
    check(st == 202 and a.wait_operation("term-src", body["operation"])[0] == 410,
          "delete after a failed dump")

    # 2. a full dump to import from
    st, body, _ = a.provision("imp", {"source_uri": src})
    check(st == 202, f"provision: {st} {body}")
    st, res = a.wait_operation("imp", body["operation"], timeout=300)
    check(st == 200 and res["state"] == "succeeded", f"dump for the import: {res}")

    # 3. SIGKILL mid-import
    pg["createdb"]("dst")
    st, body, _ = a.call("PATCH", "/v2/service_instances/imp",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["pg"],
                          "parameters": {"target_uri": pg["uri"]("dst")}},
                         {"accepts_incomplete": "true"})
    check(st == 202, f"update: {st} {body}")
    op = body["operation"]
    wait_progress(a, "imp", ["importing"])
    # the target is being written: rows arrive in dst
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = pg["psql"]("dst", "SELECT count(*) FROM pg_class WHERE relname = 't'", check=False)
        if r.strip() == "1":
            break
        time.sleep(0.05)
    a.stop(signal.SIGKILL)
    b = start_broker(env, storage_url=a.storage_url, username=a.username, password=a.password)
    st, res = b.wait_operation("imp", op, timeout=60)
    check(st == 200 and res["state"] == "failed", f"after SIGKILL mid-import: {res}")
    check("stopped" in res["description"] and "target database" in res["description"],
          f"the description does not say what state the target is in: {res['description']}")
    # the instance is ready again: a new import succeeds and replaces what is there
    st, body, _ = b.call("PATCH", "/v2/service_instances/imp",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["pg"],
                          "parameters": {"target_uri": pg["uri"]("dst")}},
                         {"accepts_incomplete": "true"})
    check(st == 202, f"update after recovery: {st} {body}")
    st, res = b.wait_operation("imp", body["operation"], timeout=300)
    check(st == 200 and res["state"] == "succeeded", f"second import: {res}")
    n = pg["psql"]("dst", "SELECT count(*) FROM t").strip()
    check(n == "2000000", f"rows after the second import: {n}")
    st, body, _ = b.deprovision("imp")
    check(st == 202 and b.wait_operation("imp", body["operation"], timeout=120)[0] == 410,
          "deprovision")
    check(store_files(store, "imp") == [], "dump left after deprovision")
    check(b.stop() == 0, "exit status")
    for x in (a, b):
        check(pg["password"] not in x.log(), "database password in a broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
