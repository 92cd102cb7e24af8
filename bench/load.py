#!/usr/bin/env python3
"""Load test of `dsd serve` (issue 9): N concurrent clients (default 200)
against one broker with a file:// store, on loopback only.

Each client provisions an instance - half of them from a tiny real
PostgreSQL database (started by the test harness), half from a source_uri
that fails fast (a closed loopback port) - polls last_operation until the
operation ends, binds when the dump succeeded, fetches the binding, and
polls last_operation a few more times. Bounded: N clients, one instance
each, and a global deadline (--timeout, default 300 s).

Reported: any 5xx or connection error (must be none), the broker's peak
thread count (sampled from /proc/PID/status Threads) and VmHWM, and the
p50/p99 latency of last_operation. Exit status 1 on any error.

    python3 bench/load.py [--clients 200] [--timeout 300]
    DSD_BIN=build/dsd by default; PostgreSQL 15 binaries as in tests/.
"""

import argparse
import os
import sys
import threading
import time
import urllib.error

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
os.environ.setdefault("DSD_BIN", os.path.join(ROOT, "build", "dsd"))

import common  # noqa: E402
from broker import PLANS, SERVICE_ID, start_broker  # noqa: E402
from pg import start_postgres  # noqa: E402


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    pg = start_postgres()
    pg["createdb"]("tiny")
    pg["psql"]("tiny", "CREATE TABLE t (id int primary key, v text);"
                       "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g;")
    good = pg["uri"]("tiny")
    bad = "postgresql://u:p@127.0.0.1:1/none"  # connection refused at once
    b = start_broker({"DSD_LOG_LEVEL": "warn"})
    pid = b.proc.pid

    lock = threading.Lock()
    lat = []          # last_operation latencies, seconds
    errors = []       # (what, detail)
    counts = {"provision": 0, "last_operation": 0, "bind": 0, "fetch_binding": 0,
              "succeeded": 0, "failed": 0}
    peak = {"threads": 0}
    deadline = time.monotonic() + args.timeout
    stop = threading.Event()

    def call(what, *a, **kw):
        t0 = time.monotonic()
        try:
            st, body, hdrs = b.call(*a, **kw)
        except (urllib.error.URLError, OSError) as e:
            with lock:
                errors.append((what, repr(e)))
            return None, None
        dt = time.monotonic() - t0
        with lock:
            counts[what] += 1
            if what == "last_operation":
                lat.append(dt)
            if st >= 500:
                errors.append((what, f"{st} {body}"))
        return st, body

    def client(i):
        iid = f"load-{i}"
        src = good if i % 2 == 0 else bad
        body = {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "organization_guid": "o",
                "space_guid": "s", "parameters": {"source_uri": src}}
        st, res = call("provision", "PUT", f"/v2/service_instances/{iid}", body,
                       {"accepts_incomplete": "true"})
        if st != 202:
            with lock:
                errors.append(("provision", f"{iid}: {st} {res}"))
            return
        state = "in progress"
        while state == "in progress" and time.monotonic() < deadline:
            st, res = call("last_operation", "GET", f"/v2/service_instances/{iid}/last_operation")
            if st != 200:
                return
            state = res["state"]
            time.sleep(0.2)
        with lock:
            counts[state if state in ("succeeded", "failed") else "failed"] += 1
        if state == "succeeded":
            st, res = call("bind", "PUT", f"/v2/service_instances/{iid}/service_bindings/b-{i}",
                           {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "app_guid": "a"})
            if st != 201:
                with lock:
                    errors.append(("bind", f"{iid}: {st}"))
            call("fetch_binding", "GET", f"/v2/service_instances/{iid}/service_bindings/b-{i}")
        for _ in range(5):
            call("last_operation", "GET", f"/v2/service_instances/{iid}/last_operation")

    def sampler():
        while not stop.is_set():
            s = proc_status(pid)
            if "Threads" in s:
                peak["threads"] = max(peak["threads"], int(s["Threads"]))
            time.sleep(0.05)

    st0 = proc_status(pid)
    smp = threading.Thread(target=sampler, daemon=True)
    smp.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, deadline - time.monotonic()))
    wall = time.monotonic() - t0
    stop.set()
    smp.join()
    s = proc_status(pid)
    alive = b.proc.poll() is None
    b.stop()

    lat.sort()
    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
    print(f"clients {args.clients}, wall {wall:.1f} s, broker alive: {alive}")
    print(f"requests: {counts}")
    print(f"threads at start {st0.get('Threads')}, peak {peak['threads']}, end {s.get('Threads')}")
    print(f"VmHWM {s.get('VmHWM')}, VmRSS {s.get('VmRSS')}")
    print(f"last_operation latency: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, "
          f"max {lat[-1] * 1000 if lat else 0:.1f} ms over {len(lat)} calls")
    unfinished = args.clients - counts["succeeded"] - counts["failed"]
    print(f"errors: {len(errors)}; unfinished clients: {unfinished}")
    for e in errors[:10]:
        print("  ", e)
    ok = not errors and alive and unfinished == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
