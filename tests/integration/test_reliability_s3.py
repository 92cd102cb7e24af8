"""Reliability of `dsd serve` with its store on S3 (fauxqs behind the fault
proxy of tests/harness/faultproxy.py) and a real PostgreSQL source (issue 9):
  - a dump whose part uploads get 503 SlowDown a few times, a connection
    reset mid-part, and slow answers succeeds;
  - a dump whose part uploads always fail ends failed, cleanly, with no
    multipart upload left in the bucket;
  - a broker killed (SIGKILL) while a multipart upload is open: a second
    broker on the same store finds the expired lease, aborts the upload
    (ListMultipartUploads on fauxqs: none left) and fails the operation
    with a description.
Skipped (77) without node/fauxqs, PostgreSQL, or the s3/pg modules."""

import os
import signal
import sys
import time

import common
import faultproxy
import s3
from broker import start_broker
from pg import start_postgres

check = common.check


def broker_env(server, **extra):
    env = {"AWS_ACCESS_KEY_ID": server["access_key"],
           "AWS_SECRET_ACCESS_KEY": server["secret_key"],
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": server["endpoint"],
           "DSD_S3_RETRY_BASE_MS": "20", "DSD_LEASE_TTL": "3"}
    env.update(extra)
    return env


def uploads(server, prefix):
    out = s3.s3tool(server, "client", "list-uploads", server["bucket"], prefix).stdout
    return [line.split(" ") for line in out.decode().splitlines() if line]


def wait_final(b, iid, timeout=300):
    st, res = b.wait_operation(iid, timeout=timeout)
    if st == 200 and "not built yet" in res.get("description", ""):
        print(f"skipping: {res['description']}", file=sys.stderr)
        sys.exit(common.SKIP)
    return st, res


def main():
    try:
        up = s3.start_fauxqs(bucket="dsd")
    except Exception as e:  # node or its modules missing
        print(f"skipping: fauxqs: {e}", file=sys.stderr)
        sys.exit(common.SKIP)
    proxy = faultproxy.start(up)
    plan = proxy["plan"]
    pg = start_postgres()
    pg["createdb"]("mid")
    pg["psql"]("mid", "CREATE TABLE t (id int, a text, b text);"
                      "INSERT INTO t SELECT g, md5(g::text), md5((g * 7)::text)"
                      " FROM generate_series(1, 1000000) g;")
    src = pg["uri"]("mid")
    url = "s3://dsd/rel"
    a = start_broker(broker_env(proxy), storage_url=url)
    if "no s3 module" in a.log():
        sys.exit(common.SKIP)

    # 1. transient 503s on parts and on the initiate, a part whose connection
    # is cut, slow parts: retried, the dump succeeds
    plan.set(("PUT", "partNumber=", "503", 3), ("POST", "uploads", "503", 1),
             ("PUT", "partNumber=", "drop", 1), ("PUT", "partNumber=", "slow:1", 2))
    st, body, _ = a.provision("slowdown", {"source_uri": src})
    check(st == 202, f"provision: {st} {body}")
    st, res = wait_final(a, "slowdown")
    check(st == 200 and res["state"] == "succeeded", f"dump through 503s: {res}")
    check(plan.hits == 7, f"the injected faults were not all hit ({plan.hits})")
    check(any(m == "PUT" and "partNumber=2" in p for m, p in plan.log),
          "the dump never used a multipart upload")
    check(uploads(up, "rel/") == [], f"uploads left: {uploads(up, 'rel/')}")

    # 2. permanent 500s on parts: failed, no upload left, nothing stored
    plan.set(("PUT", "partNumber=", "500", -1))
    st, body, _ = a.provision("broken", {"source_uri": src})
    check(st == 202, f"provision: {st} {body}")
    st, res = wait_final(a, "broken")
    check(st == 200 and res["state"] == "failed", f"dump through permanent 500s: {res}")
    check("500" in res["description"] or "InternalError" in res["description"]
          or "s3" in res["description"].lower(), f"description: {res['description']}")
    check(uploads(up, "rel/") == [], f"uploads left after failure: {uploads(up, 'rel/')}")
    plan.set()

    # 3. SIGKILL while parts are in flight (slowed down by the proxy)
    plan.set(("PUT", "partNumber=", "slow:2", -1))
    st, body, _ = a.provision("killed", {"source_uri": src})
    check(st == 202, f"provision: {st} {body}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(m == "PUT" and "partNumber=" in p for m, p in list(plan.log)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no part upload started")
    check(len(uploads(up, "rel/")) == 1, f"open uploads: {uploads(up, 'rel/')}")
    a.stop(signal.SIGKILL)
    logs = [a.log()]
    plan.set()
    b = start_broker(broker_env(proxy), storage_url=url, username=a.username,
                     password=a.password)
    st, res = b.wait_operation("killed", timeout=60)
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"after SIGKILL: {res}")
    check(uploads(up, "rel/") == [], f"multipart upload left after recovery: {uploads(up, 'rel/')}")
    st, body, _ = b.deprovision("killed")
    check(st == 202 and b.wait_operation("killed", body["operation"])[0] == 410,
          "delete after recovery")
    for iid in ("slowdown", "broken"):
        st, body, _ = b.deprovision(iid)
        check(st == 202 and b.wait_operation(iid, body["operation"])[0] == 410, f"delete {iid}")
    check(uploads(up, "rel/") == [], "uploads left at the end")
    check(b.stop() == 0, "exit status")
    logs.append(b.log())
    for log in logs:
        for secret in (up["secret_key"], pg["password"], a.password):
            check(secret not in log, "a secret reached a broker log")
    check(up["secret_key"] and pg["password"], "secrets to look for")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
