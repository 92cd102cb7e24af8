"""valgrind memcheck over a full broker cycle (issue 9): `dsd serve` (the
normal, non-sanitizer build) runs under

    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
             --error-exitcode=99

while a test drives provision (a real PostgreSQL source), bind, download,
update (import into a second database), unbind and deprovision, then stops
it with SIGTERM. Any memory error or definite/indirect leak makes valgrind
exit 99 and the test fail with the report. Suppressions for library noise
live in tests/valgrind.supp (each entry says why).
Skipped (77) when valgrind is missing, when DSD_BIN is a sanitizer build,
or without PostgreSQL / the pg dialect."""

import base64
import os
import shutil
import signal
import sys
import urllib.request

import common
from broker import PLANS, SERVICE_ID, Broker
from pg import start_postgres

check = common.check


def sanitizer_build(path):
    with open(path, "rb") as f:
        data = f.read()
    return any(s in data for s in (b"__asan_init", b"__tsan_init", b"__msan_init"))


def main():
    vg = shutil.which("valgrind")
    if vg is None:
        print("skipping: valgrind is not installed", file=sys.stderr)
        sys.exit(common.SKIP)
    if not os.path.exists(common.DSD_BIN) or sanitizer_build(common.DSD_BIN):
        print("skipping: DSD_BIN is a sanitizer build (valgrind cannot run it)", file=sys.stderr)
        sys.exit(common.SKIP)
    pg = start_postgres()
    pg["createdb"]("src")
    pg["createdb"]("dst")
    pg["psql"]("src", "CREATE TABLE customers (id serial primary key, email text, note text);"
                      "INSERT INTO customers (email, note) SELECT 'u' || g || '@example.org',"
                      " repeat('x', g % 50) FROM generate_series(1, 20000) g;"
                      "CREATE INDEX ON customers (email);")

    d = common.tmpdir("dsd-valgrind-")
    port = common.free_port()
    store = "file://" + os.path.join(d, "store")
    username, password = "broker", "broker-Valgrind-Pw-4321"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSD_", "AWS_"))}
    env.update({"PORT": str(port), "DSD_BROKER_USERNAME": username,
                "DSD_BROKER_PASSWORD": password, "DSD_STORAGE": store,
                "DSD_ALLOW_DIRECT_URIS": "all", "DSD_LOG_LEVEL": "info",
                "DSD_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "DSD_WORKERS": "2", "DSD_HTTP_THREADS": "2"})
    vlog = os.path.join(d, "valgrind.log")
    supp = os.path.join(common.SOURCE_DIR, "tests", "valgrind.supp")
    argv = [vg, "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--num-callers=30", f"--log-file={vlog}"]
    if os.path.exists(supp):
        argv.append(f"--suppressions={supp}")
    argv += [common.DSD_BIN, "serve"]
    log_path = os.path.join(d, "broker.log")
    proc = common.start_process(argv, env=env, log_path=log_path, cwd=d)
    b = Broker(proc, port, username, password, log_path, store, env)
    common.wait_port(port, timeout=180, proc=proc, what="dsd serve under valgrind")

    st, body, _ = b.provision("vg-1", {"source_uri": pg["uri"]("src"),
                                       "anonymize": {"tables": {"public.customers": {"email": "email"}}}})
    check(st == 202, f"provision: {st} {body}")
    st, res = b.wait_operation("vg-1", body["operation"], timeout=600)
    if "not built yet" in res.get("description", ""):
        sys.exit(common.SKIP)
    check(st == 200 and res["state"] == "succeeded", f"dump: {res}")
    st, body, _ = b.call("PUT", "/v2/service_instances/vg-1/service_bindings/bind-1",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "app_guid": "app-1"})
    check(st == 201, f"bind: {st} {body}")
    c = body["credentials"]
    req = urllib.request.Request(c["uri"])
    req.add_header("Authorization", "Basic " + base64.b64encode(
        f"{c['username']}:{c['password']}".encode()).decode())
    with urllib.request.urlopen(req, timeout=300) as r:
        data = r.read()
    check(len(data) == c["size"], "download size")
    st, body, _ = b.call("GET", "/v2/service_instances/vg-1/service_bindings/bind-1")
    check(st == 200, f"fetch binding: {st}")
    st, body, _ = b.call("PATCH", "/v2/service_instances/vg-1",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["pg"],
                          "parameters": {"target_uri": pg["uri"]("dst")}},
                         {"accepts_incomplete": "true"})
    check(st == 202, f"update: {st} {body}")
    st, res = b.wait_operation("vg-1", body["operation"], timeout=600)
    check(st == 200 and res["state"] == "succeeded", f"import: {res}")
    n = pg["psql"]("dst", "SELECT count(*) FROM customers").strip()
    check(n == "20000", f"imported rows: {n}")
    st, body, _ = b.call("DELETE", "/v2/service_instances/vg-1/service_bindings/bind-1",
                         query={"service_id": SERVICE_ID, "plan_id": PLANS["pg"]})
    check(st == 200, f"unbind: {st} {body}")
    st, body, _ = b.deprovision("vg-1")
    check(st == 202, f"deprovision: {st} {body}")
    st, _ = b.wait_operation("vg-1", body["operation"], timeout=300)
    check(st == 410, f"deprovision outcome: {st}")
    # a failing provision too: error paths must not leak either
    st, body, _ = b.provision("vg-2", {"source_uri": pg["uri"]("nosuchdb")})
    check(st == 202, f"provision: {st}")
    st, res = b.wait_operation("vg-2", body["operation"], timeout=300)
    check(res["state"] == "failed", f"failing provision: {res}")

    rc = b.stop(signal.SIGTERM, timeout=300)
    with open(vlog, errors="replace") as f:
        report = f.read()
    bad = rc == 99 or "Invalid read" in report or "Invalid write" in report or \
        "uninitialised" in report or "ERROR SUMMARY: 0 errors" not in report
    if bad:
        print(report[-20000:], file=sys.stderr)
    # The summary proves memcheck really ran to the end over this process.
    check("ERROR SUMMARY:" in report and "dsd serve" in report.replace(common.DSD_BIN, "dsd"),
          "no valgrind summary for dsd serve")
    check(rc == 0, f"dsd serve under valgrind exited {rc} (99: memcheck errors or leaks)")
    check("ERROR SUMMARY: 0 errors" in report, "memcheck reported errors")
    check(password not in b.log(), "broker password in the log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
