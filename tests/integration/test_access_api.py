"""Integration test of the broker's access endpoints (issue 8) with a real
PostgreSQL and a file:// store:

  - provision returns a dashboard_url with an unguessable token (again on a
    repeated PUT and on GET instance); only a salted hash is stored
  - a binding's uri downloads the dump: sha256 as in the credentials, one
    Range honoured (206 + Content-Range; suffix and open ranges; 416 past the
    end), read-only (405), 401 with a wrong password and after unbind
  - task API: POST /v1/instances/:id/imports with the dashboard token
    (Bearer and ?token=) or the broker credentials, GET /v1/tasks/:id paged
    by log_offset until done, 422 while an operation runs, DELETE cancels a
    running dump and a running import (409 once not running); every JSON
    answer is validated against docs/openapi.json
  - the operation log is complete and paged (more lines than one page),
    timestamped and redacted
  - GET /metrics (broker credentials) counts operations by type and outcome,
    rows and bytes, durations; GET /healthz is 200, and 503 when the store
    is unreachable
  - no secret (source password, binding password, dashboard token) in the
    broker's log or in the store

Long operations are made by holding a lock the dump or the import waits for,
so cancels hit a running job whatever the machine's speed. Skipped (77) when
PostgreSQL or the pg dialect is not available."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import common
import openapi_check
from broker import PLANS, SERVICE_ID, start_broker
from pg import start_postgres

check = common.check
SPEC = None


def http(method, url, body=None, headers=None, basic=None, bearer=None, form=None):
    """One request; returns (status, body bytes, headers)."""
    data = None
    if body is not None:
        data = json.dumps(body).encode()
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if form is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if basic is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{basic[0]}:{basic[1]}".encode()).decode())
    if bearer is not None:
        req.add_header("Authorization", "Bearer " + bearer)
    for k, v in (headers or {}).items():
        req.add_header(k, v)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=60) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def api(method, url, spec_path, body=None, **kw):
    """A JSON request checked against the OpenAPI document."""
    st, raw, hdrs = http(method, url, body=body, **kw)
    parsed = json.loads(raw) if raw else None
    openapi_check.check_response(SPEC, spec_path, method, st, parsed)
    return st, parsed, hdrs


class Locker:
    """Holds an ACCESS EXCLUSIVE lock on a table from a psql session until
    release(): a dump or import touching the table waits."""

    def __init__(self, pg, db, table):
        self.pg, self.db, self.tag = pg, db, f"dsd-lock-{db}-{table}"
        sql = (f"SET application_name = '{self.tag}'; BEGIN; "
               f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);")
        self.proc = subprocess.Popen([os.path.join(pg["bindir"], "psql"), "-X", "-q", "-d", db],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=pg["env"]())
        self.proc.stdin.write(sql.encode())
        self.proc.stdin.close()
        common.on_exit(self.release)
        deadline = time.monotonic() + 30
        while "1" not in pg["psql"]("postgres", "SELECT count(*) FROM pg_locks l JOIN "
                                   "pg_stat_activity a USING (pid) WHERE a.application_name = "
                                   f"'{self.tag}' AND l.mode = 'AccessExclusiveLock'"):
            check(time.monotonic() < deadline, "the lock was not taken")
            time.sleep(0.1)

    def release(self):
        if self.proc is None:
            return
        self.pg["psql"]("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    f"WHERE application_name = '{self.tag}'", check=False)
        self.proc.wait(timeout=30)
        self.proc = None


def wait_for(cond, what, timeout=120, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def task_until_done(b, task, bearer, timeout=240):
    """Polls GET /v1/tasks/:task with log_offset paging; returns the last
    answer and every log line seen, in order."""
    lines, offset = [], 0
    url = f"{b.url}/v1/tasks/{task}"
    deadline = time.monotonic() + timeout
    while True:
        st, t, _ = api("GET", f"{url}?log_offset={offset}&log_limit=7", "/v1/tasks/{task_id}",
                       bearer=bearer)
        check(st == 200, f"task {task}: {st} {t}")
        check(t["next_log_offset"] == offset + len(t["log"]), f"paging: {offset} {t}")
        lines += t["log"]
        offset = t["next_log_offset"]
        if t["status"] != "in progress" and offset >= t["log_lines"]:
            return t, lines
        check(time.monotonic() < deadline, f"task {task} still running: {t}")
        time.sleep(0.05 if t["log"] else 0.3)


def main():
    global SPEC
    openapi_check.self_test()
    SPEC = openapi_check.load()
    pg = start_postgres()
    for db in ("src", "dst", "dst2"):
        pg["createdb"](db)
    pg["psql"]("src", "CREATE TABLE customers (id int PRIMARY KEY, email text, note text);"
                      "INSERT INTO customers SELECT g, 'u' || g || '@example.com', repeat('x', g % 50)"
                      " FROM generate_series(1, 3000) g;"
                      "CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric);"
                      "INSERT INTO orders SELECT g, g % 3000 + 1, g * 1.5 FROM generate_series(1, 500) g;")
    # many tables: the log gets more lines than one page (100) holds
    pg["psql"]("src", "".join(f"CREATE TABLE extra_{i} (id int); INSERT INTO extra_{i} VALUES ({i});"
                              for i in range(120)))
    b = start_broker()
    base = b.url
    store = b.storage_url[len("file://"):]
    broker_basic = (b.username, b.password)

    # ---------------------------------------------------------- provision
    anon = {"tables": {"public.customers": {"email": "email"}}}
    st, body, _ = b.provision("acc-1", {"source_uri": pg["uri"]("src"), "anonymize": anon})
    check(st == 202, f"provision: {st} {body}")
    dash = body.get("dashboard_url", "")
    m = re.fullmatch(re.escape(base) + r"/dashboard/acc-1\?token=([0-9a-f]{64})", dash)
    check(m is not None, f"dashboard_url {dash!r}")
    token = m.group(1)
    op1 = body["operation"]
    st, res = b.wait_operation("acc-1", op1, timeout=240)
    if res["state"] == "failed" and "not built yet" in res["description"]:
        print(f"skipping: {res['description']}", file=sys.stderr)
        sys.exit(common.SKIP)
    check(res["state"] == "succeeded", f"dump failed: {res}")
    st, body, _ = b.provision("acc-1", {"source_uri": pg["uri"]("src"), "anonymize": anon})
    check(st == 200 and body.get("dashboard_url") == dash, f"repeat provision: {st} {body}")
    st, body, _ = b.call("GET", "/v2/service_instances/acc-1")
    check(st == 200 and body.get("dashboard_url") == dash, f"fetch: {st} {body}")
    with open(os.path.join(store, "instances", "acc-1", "instance.json")) as f:
        inst = json.load(f)
    check(len(inst["dashboard"]["token_sha256"]) == 64 and inst["dashboard"]["token_sha256"] !=
          hashlib.sha256(token.encode()).hexdigest(), "token hash must be salted")

    # ---------------------------------------------------------- healthz
    st, h, _ = api("GET", base + "/healthz", "/healthz")
    check(st == 200 and h == {"status": "ok"}, f"healthz: {st} {h}")

    # ---------------------------------------------------------- download
    st, body, _ = b.call("PUT", "/v2/service_instances/acc-1/service_bindings/bind-1",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "app_guid": "app-1"})
    check(st == 201, f"bind: {st} {body}")
    cred = body["credentials"]
    check(cred["uri"] == f"{base}/v1/dumps/acc-1/download", f"uri {cred['uri']}")
    bb = (cred["username"], cred["password"])
    st, full, hdrs = http("GET", cred["uri"], basic=bb)
    check(st == 200 and len(full) == cred["size"], f"download: {st} {len(full)}")
    check(hashlib.sha256(full).hexdigest() == cred["sha256"], "download sha256")
    check(hdrs.get("Accept-Ranges") == "bytes", "Accept-Ranges")
    size = len(full)
    for rng, want in ((f"bytes=0-99", (0, 99)), (f"bytes=100-", (100, size - 1)),
                      (f"bytes=-50", (size - 50, size - 1)),
                      (f"bytes=10-{size + 1000}", (10, size - 1)),
                      (f"bytes={size - 1}-{size - 1}", (size - 1, size - 1))):
        st, part, hdrs = http("GET", cred["uri"], basic=bb, headers={"Range": rng})
        check(st == 206, f"range {rng}: {st}")
        check(hdrs.get("Content-Range") == f"bytes {want[0]}-{want[1]}/{size}",
              f"range {rng}: Content-Range {hdrs.get('Content-Range')}")
        check(part == full[want[0]:want[1] + 1], f"range {rng}: wrong bytes")
    st, _, hdrs = http("GET", cred["uri"], basic=bb, headers={"Range": f"bytes={size}-"})
    check(st == 416 and hdrs.get("Content-Range") == f"bytes */{size}", f"416: {st} {dict(hdrs)}")
    st, whole, _ = http("GET", cred["uri"], basic=bb, headers={"Range": "bytes=0-1,5-9"})
    check(st == 200 and whole == full, f"multi-range falls back to 200: {st}")
    for method in ("PUT", "DELETE", "POST"):
        st, _, _ = http(method, cred["uri"], basic=bb, body={})
        check(st == 405, f"{method} on the download: {st}")
    st, _, hdrs = http("GET", cred["uri"], basic=(bb[0], bb[1] + "x"))
    check(st == 401 and hdrs.get("WWW-Authenticate", "").startswith("Basic"), f"wrong pw: {st}")
    st, _, _ = http("GET", cred["uri"], basic=broker_basic)
    check(st == 401, f"broker credentials are not a binding's: {st}")
    st, _, _ = http("GET", cred["uri"])
    check(st == 401, f"no credentials: {st}")

    # ---------------------------------------------------------- task API: import
    imports = f"{base}/v1/instances/acc-1/imports"
    ip = "/v1/instances/{instance_id}/imports"
    st, e, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst")})
    check(st == 401, f"import without credentials: {st}")
    st, e, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst")}, bearer="0" * 64)
    check(st == 401, f"import with a wrong token: {st}")
    st, e, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst"), "bogus": 1},
                   bearer=token)
    check(st == 400 and "bogus" in e["description"], f"unknown parameter: {st} {e}")
    st, e, _ = api("POST", imports, ip, body={"clean": True}, bearer=token)
    check(st == 400 and "target" in e["description"], f"no target: {st} {e}")
    st, e, _ = api("POST", imports, ip, body={"target_uri": "mysql://u:p@h/db"}, bearer=token)
    check(st == 400, f"dialect mismatch: {st} {e}")
    st, e, _ = api("POST", f"{base}/v1/instances/nope/imports", ip,
                   body={"target_uri": pg["uri"]("dst")}, basic=broker_basic)
    check(st == 404, f"unknown instance: {st}")
    st, t, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst"), "clean": True},
                   bearer=token)
    check(st == 202 and t["task_id"].startswith("acc-1~update-"), f"import: {st} {t}")
    task = t["task_id"]
    final, lines = task_until_done(b, task, token)
    check(final["status"] == "succeeded" and final["type"] == "update", f"import task: {final}")
    check(len(lines) == final["log_lines"] > 0, "import log lines")
    check(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", l["at"]) for l in lines),
          "log timestamps")
    check(any("importing" in l["line"] for l in lines), f"import log: {lines}")
    n = pg["psql"]("dst", "SELECT count(*) FROM customers").strip()
    check(n == "3000", f"imported rows: {n}")
    # the same task read with ?token= and with the broker credentials
    st, t2, _ = api("GET", f"{base}/v1/tasks/{task}?token={token}", "/v1/tasks/{task_id}")
    check(st == 200 and t2["status"] == "succeeded" and len(t2["log"]) == final["log_lines"],
          f"task via ?token=: {st}")
    st, t3, _ = api("GET", f"{base}/v1/tasks/{task}?log_offset={final['log_lines']}",
                    "/v1/tasks/{task_id}", basic=broker_basic)
    check(st == 200 and t3["log"] == [] and t3["next_log_offset"] == final["log_lines"],
          f"past the end: {t3}")
    st, e, _ = api("GET", f"{base}/v1/tasks/{task}?log_offset=-1", "/v1/tasks/{task_id}",
                   bearer=token)
    check(st == 400, f"bad log_offset: {st}")
    st, e, _ = api("GET", f"{base}/v1/tasks/{task}", "/v1/tasks/{task_id}")
    check(st == 401, f"task without credentials: {st}")
    st, e, _ = api("GET", f"{base}/v1/tasks/acc-1~update-nope", "/v1/tasks/{task_id}",
                   bearer=token)
    check(st == 404, f"unknown task: {st}")
    st, e, _ = api("DELETE", f"{base}/v1/tasks/{task}", "/v1/tasks/{task_id}", bearer=token)
    check(st == 409, f"cancel of a finished task: {st} {e}")

    # the provision's log: complete (more than a page), paged, in order
    ptask = f"acc-1~{op1}"
    pfinal, plines = task_until_done(b, ptask, token)
    check(pfinal["type"] == "provision" and pfinal["status"] == "succeeded", f"{pfinal}")
    check(len(plines) > 100 and len(plines) == pfinal["log_lines"],
          f"provision log has {len(plines)} lines, expected more than one page")
    check(any("extra_119" in l["line"] for l in plines), "a late table is missing from the log")
    check(os.path.exists(os.path.join(store, "instances", "acc-1", "logs", op1, "000002.json")),
          "log pages")
    st, whole, _ = api("GET", f"{base}/v1/tasks/{ptask}?log_limit=1000", "/v1/tasks/{task_id}",
                       bearer=token)
    check(whole["log"] == plines, "a single read differs from the paged reads")

    # ---------------------------------------------------------- cancel a running dump
    lk = Locker(pg, "src", "orders")
    st, body, _ = b.provision("acc-2", {"source_uri": pg["uri"]("src")})
    check(st == 202, f"provision 2: {st}")
    tok2 = body["dashboard_url"].split("token=")[1]
    check(tok2 != token, "dashboard tokens must differ per instance")
    op2 = body["operation"]
    time.sleep(1.5)
    st, res, _ = b.last_operation("acc-2", op2)
    check(res["state"] == "in progress", f"the dump should wait for the lock: {res}")
    # an import while the dump runs: the OSB concurrency rule
    st, e, _ = api("POST", f"{base}/v1/instances/acc-2/imports", ip,
                   body={"target_uri": pg["uri"]("dst2")}, bearer=tok2)
    check(st == 422 and e["error"] == "ConcurrencyError", f"import during dump: {st} {e}")
    # another instance's token does not work here
    st, e, _ = api("DELETE", f"{base}/v1/tasks/acc-2~{op2}", "/v1/tasks/{task_id}", bearer=token)
    check(st == 401, f"cancel with another instance's token: {st}")
    st, c, _ = api("DELETE", f"{base}/v1/tasks/acc-2~{op2}", "/v1/tasks/{task_id}", bearer=tok2)
    check(st == 202 and c["status"] == "canceling", f"cancel: {st} {c}")
    # the pg dialect does not interrupt its wait for table locks (it checks
    # the cancel flag once it has them), so the lock goes now
    lk.release()
    st, res = b.wait_operation("acc-2", op2, timeout=60)
    check(res["state"] == "failed" and "canceled on request" in res["description"],
          f"canceled dump: {res}")
    check(not os.path.exists(os.path.join(store, "dumps", "acc-2.tar.zst")), "canceled dump left")

    # ---------------------------------------------------------- cancel a running import
    pg["psql"]("dst2", "CREATE TABLE orders (id int);")
    lk = Locker(pg, "dst2", "orders")
    st, t, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst2")},
                   basic=broker_basic)
    check(st == 202, f"import 2: {st} {t}")
    time.sleep(1.5)
    st, e, _ = api("POST", imports, ip, body={"target_uri": pg["uri"]("dst")}, bearer=token)
    check(st == 422, f"second import while one runs: {st} {e}")
    st, t4, _ = api("GET", f"{base}/v1/tasks/{t['task_id']}", "/v1/tasks/{task_id}", bearer=token)
    check(t4["status"] == "in progress", f"import should wait for the lock: {t4}")
    st, c, _ = api("DELETE", f"{base}/v1/tasks/{t['task_id']}", "/v1/tasks/{task_id}",
                   bearer=token)
    check(st == 202, f"cancel import: {st} {c}")
    lk.release()
    final, _ = task_until_done(b, t["task_id"], token, timeout=60)
    check(final["status"] == "failed" and "canceled on request" in final["description"],
          f"canceled import: {final}")
    st, body, _ = b.call("GET", "/v2/service_instances/acc-1")
    check(st == 200, f"the dump stays usable after a canceled import: {st} {body}")

    # ---------------------------------------------------------- metrics
    st, raw, hdrs = http("GET", base + "/metrics")
    check(st == 401, f"metrics without credentials: {st}")
    st, raw, hdrs = http("GET", base + "/metrics", basic=broker_basic)
    check(st == 200 and hdrs.get("Content-Type", "").startswith("text/plain"), f"metrics: {st}")
    text = raw.decode()
    metrics = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        metrics[name] = float(value)
    def metric(name):
        check(name in metrics, f"metric {name} missing:\n{text}")
        return metrics[name]
    check(metric('dsd_operations_total{type="provision",outcome="succeeded"}') == 1, "provisions ok")
    check(metric('dsd_operations_total{type="provision",outcome="canceled"}') == 1, "provisions canceled")
    check(metric('dsd_operations_total{type="update",outcome="succeeded"}') == 1, "imports ok")
    check(metric('dsd_operations_total{type="update",outcome="canceled"}') == 1, "imports canceled")
    check(metric('dsd_operations_in_flight{type="provision"}') == 0, "in flight")
    check(metric('dsd_rows_moved_total{type="provision"}') >= 3500, "rows dumped")
    check(metric('dsd_rows_moved_total{type="update"}') >= 3500, "rows imported")
    check(metric('dsd_bytes_moved_total{type="provision"}') == size, "bytes dumped")
    check(metric('dsd_operation_duration_seconds_count{type="provision"}') == 2, "duration count")
    check(metric('dsd_operation_duration_seconds_bucket{type="provision",le="+Inf"}') == 2, "+Inf")
    check(metric("dsd_s3_retries_total") == 0, "s3 retries on a file store")
    check(metric('dsd_http_requests_total{code="2xx"}') > 10, "http requests")

    # ---------------------------------------------------------- unbind revokes
    st, _, _ = b.call("DELETE", "/v2/service_instances/acc-1/service_bindings/bind-1",
                      query={"service_id": SERVICE_ID, "plan_id": PLANS["pg"]})
    check(st == 200, f"unbind: {st}")
    st, _, _ = http("GET", cred["uri"], basic=bb)
    check(st == 401, f"download after unbind: {st}")

    # ---------------------------------------------------------- healthz 503
    moved = store + ".away"
    os.rename(store, moved)
    with open(store, "w") as f:
        f.write("not a directory")
    try:
        st, h, _ = api("GET", base + "/healthz", "/healthz")
        check(st == 503 and h["status"] == "unavailable" and h.get("description"),
              f"healthz without a store: {st} {h}")
    finally:
        os.unlink(store)
        os.rename(moved, store)
    st, h, _ = api("GET", base + "/healthz", "/healthz")
    check(st == 200, f"healthz after the store came back: {st}")

    # ---------------------------------------------------------- secrets
    check(b.stop() == 0, "broker exit status")
    log = b.log()
    secrets = {"db password": pg["password"], "binding password": cred["password"],
               "dashboard token": token, "dashboard token 2": tok2}
    for what, s in secrets.items():
        check(s not in log, f"the {what} reached the broker log")
    for root, _, files in os.walk(store):
        for fn in files:
            with open(os.path.join(root, fn), "rb") as f:
                data = f.read()
            for what, s in secrets.items():
                check(s.encode() not in data, f"the {what} is stored in {fn}")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
