"""Operations that do not end normally, with a real PostgreSQL source:
  - DELETE while the dump runs cancels it (the user's cancel in CF): the
    delete completes and leaves no object and no temporary upload, also
    when the DELETE reaches another broker process than the one dumping;
  - a broker killed (SIGKILL) mid-dump: another broker on the same store
    finds the expired lease, cleans the partial upload up and reports the
    operation failed; the instance can then be deleted;
  - a broker stopped (SIGTERM) mid-dump records the operation as failed
    before it exits.
Skipped (77) when PostgreSQL or the pg dialect is not available."""

import os
import signal
import sys
import time

import common
from broker import start_broker
from pg import start_postgres

check = common.check


def wait_running(b, iid, word="dumping", timeout=120):
    """Waits until the operation reports dump progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, res, _ = b.last_operation(iid)
        check(st == 200, f"last_operation {iid}: {st}")
        if res["state"] != "in progress":
            if "not built yet" in res["description"]:
                print(f"skipping: {res['description']}", file=sys.stderr)
                sys.exit(common.SKIP)
            raise AssertionError(f"{iid} ended before it could be interrupted: {res}")
        if word in res["description"]:
            return res
        time.sleep(0.05)
    raise AssertionError(f"{iid} never reported progress")


def leftovers(store, iid):
    d = os.path.join(store, "dumps")
    return [n for n in (os.listdir(d) if os.path.isdir(d) else []) if n.startswith(iid)]


def main():
    pg = start_postgres()
    pg["createdb"]("big")
    pg["psql"]("big", "CREATE TABLE t (id int, a text, b text);"
                      "INSERT INTO t SELECT g, md5(g::text), repeat(md5(g::text), 3)"
                      " FROM generate_series(1, 2000000) g;")
    src = pg["uri"]("big")
    env = {"DSD_LEASE_TTL": "3"}
    a = start_broker(env)
    store = a.storage_url[len("file://"):]

    # 1. cancel by DELETE
    st, body, _ = a.provision("cancel-1", {"source_uri": src})
    check(st == 202, f"provision: {st}")
    wait_running(a, "cancel-1", word="starting")
    st, body, _ = a.deprovision("cancel-1")
    check(st == 202, f"delete during dump: {st} {body}")
    st, _ = a.wait_operation("cancel-1", body["operation"], timeout=120)
    check(st == 410, f"cancel outcome: {st}")
    check(leftovers(store, "cancel-1") == [], f"left: {leftovers(store, 'cancel-1')}")
    check("canceled" in a.log(), "the cancel is not in the log")

    # 1b. cancel through another broker process on the same store: the
    # broker running the dump sees the instance marked for deletion
    other = start_broker(env, storage_url=a.storage_url, username=a.username, password=a.password)
    st, body, _ = a.provision("cancel-2", {"source_uri": src})
    check(st == 202, f"provision: {st}")
    wait_running(a, "cancel-2", word="starting")
    st, body, _ = other.deprovision("cancel-2")
    check(st == 202, f"delete through the other broker: {st} {body}")
    st, _ = other.wait_operation("cancel-2", body["operation"], timeout=120)
    check(st == 410, f"cross-process cancel outcome: {st}")
    check(leftovers(store, "cancel-2") == [], f"left: {leftovers(store, 'cancel-2')}")
    check(a.log().count("canceled: the instance is being deleted") >= 2,
          "the running broker did not cancel its dump")
    other.stop()

    # 2. SIGKILL mid-dump; a second broker recovers
    st, body, _ = a.provision("kill-1", {"source_uri": src})
    check(st == 202, f"provision: {st}")
    wait_running(a, "kill-1")
    a.stop(signal.SIGKILL)
    b = start_broker(env, storage_url=a.storage_url, username=a.username, password=a.password)
    st, res = b.wait_operation("kill-1", timeout=60)
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"after SIGKILL: {res}")
    check(leftovers(store, "kill-1") == [], f"partial upload left: {leftovers(store, 'kill-1')}")
    st, body, _ = b.deprovision("kill-1")
    check(st == 202 and b.wait_operation("kill-1")[0] == 410, "delete after recovery")

    # 3. SIGTERM mid-dump: recorded as failed by the stopping broker itself
    st, body, _ = b.provision("term-1", {"source_uri": src})
    check(st == 202, f"provision: {st}")
    wait_running(b, "term-1")
    check(b.stop(signal.SIGTERM) == 0, "SIGTERM exit status")
    c = start_broker(env, storage_url=a.storage_url, username=a.username, password=a.password)
    st, res, _ = c.last_operation("term-1")
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"after SIGTERM: {res}")
    check(leftovers(store, "term-1") == [], f"left after SIGTERM: {leftovers(store, 'term-1')}")
    c.stop()
    for x in (a, other, b, c):
        check(pg["password"] not in x.log(), "database password in a broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
