"""Integration test of `dsd serve` on a file:// store: the OSB API as a
platform drives it (status codes, headers, async provision/deprovision,
binding and download), state read back after a restart and by a second
broker process, and no secret in the broker's log."""

import base64
import json
import os
import sys
import time
import urllib.request

import common
from broker import PLANS, SERVICE_ID, restart, start_broker

check = common.check
DB_PASSWORD = "Db-Pass-w0rd-9f8e7d"
SOURCE_URI = f"postgresql://app:{DB_PASSWORD}@db.example.com:5432/app"


def store_dir(b):
    return b.storage_url[len("file://"):]


def seed_ready_instance(b, iid):
    """Writes, directly into the store, what a successful provision leaves
    (the pipeline is tested elsewhere): the broker must serve it from there."""
    root = store_dir(b)
    os.makedirs(os.path.join(root, "instances", iid, "operations"), exist_ok=True)
    os.makedirs(os.path.join(root, "dumps"), exist_ok=True)
    payload = b"not really a tar.zst but bytes to download\n" * 100
    with open(os.path.join(root, "dumps", f"{iid}.tar.zst"), "wb") as f:
        f.write(payload)
    inst = {"id": iid, "service_id": SERVICE_ID, "plan_id": PLANS["pg"], "plan": "pg",
            "organization_guid": "org-1", "space_guid": "space-1", "status": "ready",
            "last_operation": "op-seed", "request_hmac": "seed", "parameters": {},
            "dump": {"key": f"dumps/{iid}.tar.zst", "size": len(payload), "sha256": "0" * 64,
                     "format": "tar+zstd", "created_at": "2026-01-01T00:00:00Z", "tables": 3}}
    op = {"id": "op-seed", "type": "provision", "state": "succeeded",
          "description": "dump complete", "transient": [], "steps": [], "log": [],
          "lease": {"owner": "seed", "expires_at": 0}}
    with open(os.path.join(root, "instances", iid, "instance.json"), "w") as f:
        json.dump(inst, f)
    with open(os.path.join(root, "instances", iid, "operations", "op-seed.json"), "w") as f:
        json.dump(op, f)
    return payload


def test_protocol(b):
    st, body, hdrs = b.call("GET", "/v2/catalog", headers={"X-Broker-API-Request-Identity": "rid-123"})
    check(st == 200, f"catalog: {st}")
    check(hdrs.get("X-Broker-API-Request-Identity") == "rid-123", "request identity not echoed")
    svc = body["services"][0]
    check(svc["id"] == SERVICE_ID and svc["name"] == "data-service-dump", "catalog service")
    check({p["name"] for p in svc["plans"]} == {"pg", "mysql", "mongo"}, "catalog plans")
    check(svc["instances_retrievable"] and svc["bindings_retrievable"], "retrievable flags")
    # older API version: only its fields
    st, body, _ = b.call("GET", "/v2/catalog", version="2.13")
    check(st == 200 and "instances_retrievable" not in body["services"][0], "2.13 catalog")
    for v in ("2.14", "2.15", "2.16"):
        check(b.call("GET", "/v2/catalog", version=v)[0] == 200, f"version {v} refused")
    # auth
    st, body, hdrs = b.call("GET", "/v2/catalog", auth=False)
    check(st == 401 and hdrs.get("WWW-Authenticate", "").startswith("Basic"), f"no auth: {st}")
    st, _, _ = b.call("GET", "/v2/catalog", basic=(b.username, b.password + "x"))
    check(st == 401, f"wrong password: {st}")
    st, _, _ = b.call("GET", "/v2/catalog", basic=("someone", b.password))
    check(st == 401, f"wrong user: {st}")
    # version header
    for v in (None, "1.0", "3.0", "2.12", "garbage", "2"):
        st, body, _ = b.call("GET", "/v2/catalog", version=v)
        check(st == 412 and "description" in body and "error" in body, f"version {v!r}: {st}")
    # body limits and JSON
    st, _, _ = b.call("PUT", "/v2/service_instances/big", raw_body=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                      query={"accepts_incomplete": "true"})
    check(st == 413, f"oversized body: {st}")
    st, body, _ = b.call("PUT", "/v2/service_instances/x1", raw_body=b"{not json",
                         query={"accepts_incomplete": "true"})
    check(st == 400 and body.get("description"), f"malformed JSON: {st}")
    # async required
    st, body, _ = b.call("PUT", "/v2/service_instances/x1", {"service_id": SERVICE_ID})
    check(st == 422 and body["error"] == "AsyncRequired", f"async required: {st} {body}")
    # ids that must never reach a storage key
    for bad in ("a%2Fb", "..", "a..b", "%2E%2E", "x" * 256, "a%0Ab"):
        st, _, _ = b.provision(bad, {"source_uri": SOURCE_URI})
        check(st == 400, f"bad id {bad!r}: {st}")
    check(not os.path.exists(os.path.join(store_dir(b), "a")), "bad id created state")
    # missing/unknown ids and guids
    for body in ({"plan_id": PLANS["pg"], "organization_guid": "o", "space_guid": "s"},
                 {"service_id": "nope", "plan_id": PLANS["pg"], "organization_guid": "o", "space_guid": "s"},
                 {"service_id": SERVICE_ID, "plan_id": "nope", "organization_guid": "o", "space_guid": "s"},
                 {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "space_guid": "s"},
                 {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "organization_guid": "o"}):
        body["parameters"] = {"source_uri": SOURCE_URI}
        st, resp, _ = b.call("PUT", "/v2/service_instances/x2", body, {"accepts_incomplete": "true"})
        check(st == 400 and resp.get("description"), f"bad provision body {body}: {st}")
    # parameter rules
    st, body, _ = b.provision("x3", {"source_uri": SOURCE_URI, "tables": ["a"]})
    check(st == 400 and "tables" in body["description"], f"unknown parameter: {st} {body}")
    st, body, _ = b.provision("x3", {"source_uri": "mysql://u:p@h/db"})
    check(st == 400 and "pg plan" in body["description"], f"plan mismatch: {st} {body}")
    st, body, _ = b.provision("x3", {"source_uri": SOURCE_URI, "source": "other"})
    check(st == 400 and "not both" in body["description"], f"both sources: {st} {body}")
    st, body, _ = b.provision("x3", {"source": "mydb"})
    check(st == 400 and "DSD_CF_API" in body["description"] and "HINT" in body["description"],
          f"instance name without CF API: {st} {body}")
    st, body, _ = b.provision("x3", {"source_uri": SOURCE_URI, "compression": "lz4"})
    check(st == 400, f"bad compression: {st}")
    # unknown things
    check(b.last_operation("never")[0] == 404, "last_operation of unknown instance")
    check(b.call("GET", "/v2/service_instances/never")[0] == 404, "fetch unknown instance")
    check(b.deprovision("never")[0] == 410, "deprovision unknown instance")
    st, _, _ = b.call("GET", "/v2/service_instances/never/last_operation",
                      query={"service_id": "bogus"})
    check(st == 400, f"last_operation with unknown service_id: {st}")
    st, _, _ = b.call("DELETE", "/v2/service_instances/never/service_bindings/b",
                      query={"service_id": SERVICE_ID, "plan_id": PLANS["pg"]})
    check(st == 410, f"unbind unknown binding: {st}")


def test_provision_flow(b):
    ident = "cloudfoundry " + base64.b64encode(b'{"user_id":"user-guid-77"}').decode()
    st, body, hdrs = b.provision("inst-1", {"source_uri": SOURCE_URI},
                                 headers={"X-Broker-API-Originating-Identity": ident,
                                          "X-Broker-API-Request-Identity": "rid-prov"})
    check(st == 202 and body.get("operation"), f"provision: {st} {body}")
    check(hdrs.get("X-Broker-API-Request-Identity") == "rid-prov", "identity echo on PUT")
    op = body["operation"]
    # an identical repeat while in progress or after it: 202 or a final answer
    st2, body2, _ = b.provision("inst-1", {"source_uri": SOURCE_URI})
    check(st2 in (200, 202, 409), f"repeat: {st2}")
    st3, _, _ = b.provision("inst-1", {"source_uri": SOURCE_URI, "compression": "gzip"})
    check(st3 == 409, f"same id, other attributes: {st3}")
    st, res = b.wait_operation("inst-1", op)
    check(st == 200, f"last_operation: {st}")
    dump = os.path.join(store_dir(b), "dumps", "inst-1.tar.zst")
    if res["state"] == "succeeded":
        check(os.path.exists(dump), "succeeded but no dump object in the store")
    else:
        check(res["state"] == "failed", f"state {res}")
        # db.example.com does not resolve: without the pg dialect the
        # description says "not built yet", with it the connection fails
        check("not built yet" in res["description"] or "source" in res["description"],
              f"description {res}")
        check(DB_PASSWORD not in res["description"], "password in the description")
        check(not os.path.exists(dump), "failed dump left an object")
        st, body, _ = b.call("PUT", "/v2/service_instances/inst-1/service_bindings/b1",
                             {"service_id": SERVICE_ID, "plan_id": PLANS["pg"]})
        check(st == 400, f"bind on failed dump: {st}")
    # the operation record names the user and holds no password
    with open(os.path.join(store_dir(b), "instances", "inst-1", "operations", op + ".json")) as f:
        rec = f.read()
    check("cloudfoundry:user-guid-77" in rec, "originating user not recorded")
    for root, _, files in os.walk(store_dir(b)):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(root, name)) as f:
                    check(DB_PASSWORD not in f.read(), f"password stored in {name}")
    return op, res


def test_bind_and_download(b):
    payload = seed_ready_instance(b, "ready-1")
    st, body, _ = b.call("GET", "/v2/service_instances/ready-1")
    check(st == 200 and body["plan_id"] == PLANS["pg"], f"fetch: {st} {body}")
    bind = {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "app_guid": "app-1",
            "bind_resource": {"app_guid": "app-1"}}
    st, body, _ = b.call("PUT", "/v2/service_instances/ready-1/service_bindings/bind-1", bind)
    check(st == 201, f"bind: {st} {body}")
    cred = body["credentials"]
    for k in ("uri", "username", "password", "filename", "format", "size", "sha256", "dialect",
              "created_at", "tables"):
        check(k in cred, f"credential {k} missing")
    check(cred["uri"] == f"{b.url}/v1/dumps/ready-1/download", f"uri {cred['uri']}")
    st, again, _ = b.call("PUT", "/v2/service_instances/ready-1/service_bindings/bind-1", bind)
    check(st == 200 and again["credentials"]["password"] == cred["password"], f"rebind: {st}")
    other = dict(bind, app_guid="app-2", bind_resource={"app_guid": "app-2"})
    st, _, _ = b.call("PUT", "/v2/service_instances/ready-1/service_bindings/bind-1", other)
    check(st == 409, f"bind with other attributes: {st}")
    st, body, _ = b.call("GET", "/v2/service_instances/ready-1/service_bindings/bind-1")
    check(st == 200 and body["credentials"]["password"] == cred["password"], f"get binding: {st}")
    # service key style binding (credential_client_id instead of app_guid)
    st, _, _ = b.call("PUT", "/v2/service_instances/ready-1/service_bindings/key-1",
                      {"service_id": SERVICE_ID, "plan_id": PLANS["pg"],
                       "bind_resource": {"credential_client_id": "cf-cli"}})
    check(st == 201, f"service key binding: {st}")
    # download with the binding's credentials
    req = urllib.request.Request(cred["uri"])
    tok = base64.b64encode(f"{cred['username']}:{cred['password']}".encode()).decode()
    req.add_header("Authorization", "Basic " + tok)
    with urllib.request.urlopen(req, timeout=30) as r:
        got = r.read()
    check(got == payload, "downloaded bytes differ")
    st, _, _ = b.call("GET", "/v1/dumps/ready-1/download", version=None,
                      basic=(cred["username"], "wrong"))
    check(st == 401, f"download with a wrong password: {st}")
    # unbind revokes
    q = {"service_id": SERVICE_ID, "plan_id": PLANS["pg"]}
    st, body, _ = b.call("DELETE", "/v2/service_instances/ready-1/service_bindings/bind-1", query=q)
    check(st == 200 and body == {}, f"unbind: {st} {body}")
    st, _, _ = b.call("DELETE", "/v2/service_instances/ready-1/service_bindings/bind-1", query=q)
    check(st == 410, f"unbind again: {st}")
    st, _, _ = b.call("GET", "/v1/dumps/ready-1/download", version=None,
                      basic=(cred["username"], cred["password"]))
    check(st == 401, f"download after unbind: {st}")
    with open(b.log_path) as f:
        check(cred["password"] not in f.read(), "binding password in the log")


def test_expired_lease(b):
    """An operation left in progress by a dead broker is failed by this one."""
    seed_ready_instance(b, "orphan-1")
    root = store_dir(b)
    op = {"id": "op-dead", "type": "provision", "state": "in progress", "description": "dumping",
          "transient": [{"type": "dump_object", "key": "dumps/orphan-1.tar.zst", "partial": False}],
          "steps": [], "log": [], "lease": {"owner": "deadhost:1:ff", "expires_at": int(time.time()) - 1}}
    with open(os.path.join(root, "instances", "orphan-1", "operations", "op-dead.json"), "w") as f:
        json.dump(op, f)
    path = os.path.join(root, "instances", "orphan-1", "instance.json")
    with open(path) as f:
        inst = json.load(f)
    inst["last_operation"] = "op-dead"
    del inst["dump"]
    with open(path, "w") as f:
        json.dump(inst, f)
    st, res = b.wait_operation("orphan-1")
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"expired lease: {st} {res}")
    st, _, _ = b.deprovision("orphan-1")
    check(st == 202, f"delete after failure: {st}")
    check(b.wait_operation("orphan-1")[0] == 410, "orphan not deleted")


def main():
    b = start_broker()
    test_protocol(b)
    op, res = test_provision_flow(b)
    test_bind_and_download(b)
    test_expired_lease(b)

    # a second broker on the same store answers for the same instance
    b2 = start_broker(storage_url=b.storage_url, username=b.username, password=b.password)
    st, res2 = b2.wait_operation("inst-1", op)
    check(st == 200 and res2["state"] == res["state"], f"second broker: {st} {res2}")
    check(b2.call("GET", "/v2/service_instances/ready-1")[0] == 200, "second broker fetch")

    # restart: the state is read back from the store
    b = restart(b)
    st, res3 = b.wait_operation("inst-1", op)
    check(st == 200 and res3 == res, f"after restart: {st} {res3} != {res}")
    st, body, _ = b.call("GET", "/v2/service_instances/ready-1")
    check(st == 200, f"fetch after restart: {st}")

    # deprovision through the second broker, observed through the first
    st, body, _ = b2.deprovision("inst-1")
    check(st == 202, f"deprovision: {st} {body}")
    st, _ = b.wait_operation("inst-1", body["operation"])
    check(st == 410, f"deprovision outcome: {st}")
    check(not os.path.exists(os.path.join(store_dir(b), "instances", "inst-1", "instance.json")),
          "instance state left behind")
    check(b.deprovision("inst-1")[0] == 410, "second delete")
    st, _, _ = b.deprovision("ready-1")
    check(st == 202 and b.wait_operation("ready-1")[0] == 410, "delete ready instance")
    check(not os.path.exists(os.path.join(store_dir(b), "dumps", "ready-1.tar.zst")),
          "dump object left behind")

    # graceful shutdown, and no secret in any log
    for x in (b, b2):
        check(x.stop() == 0, "broker did not exit 0 on SIGTERM")
        log = x.log()
        check(x.password not in log, "broker password in the log")
        check(DB_PASSWORD not in log, "database password in the log")
        check("broker listening" in log and "/last_operation 200" in log, "request log lines")
    check("stopping" in b.log(), "no shutdown line")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
