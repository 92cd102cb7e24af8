"""The `mongo` plan end to end through the broker, against the wire-protocol
double of tests/harness/mongo.py (no MongoDB server can run here): provision
a dump of a database (source_uri mongodb://), with an anonymization rule on
a nested field, bind and check the credentials, import it with
update-service (target_uri) into another server's database, delete the
instance, and check that no password reached the broker's log."""

import os
import sys

import common
import mongo
from broker import PLANS, SERVICE_ID, start_broker

check = common.check


def main():
    src = mongo.MongoDouble()
    src_uri = src.start()
    dst = mongo.MongoDouble()
    dst_uri = dst.start()
    mongo.use(src_uri)
    mongo.insert("app", "customers", [
        {"_id": i, "email": f"u{i}@corp.example", "address": {"city": "Lyon", "zip": "69001"}}
        for i in range(1500)])
    mongo.command("app", {"createIndexes": "customers", "indexes": [
        {"key": {"email": 1}, "name": "email_1", "unique": True}]})

    b = start_broker()
    st, body, _ = b.provision("mg-1", {
        "source_uri": src_uri.replace("/?", "/app?"),
        "anonymize": {"tables": {"app.customers": {"address.city": "hash"}}}}, plan="mongo")
    check(st == 202, f"provision: {st} {body}")
    st, res = b.wait_operation("mg-1", body["operation"], timeout=120)
    check(st == 200, f"last_operation: {st}")
    if res["state"] == "failed" and "not built yet" in res["description"]:
        print(f"skipping: {res['description']}", file=sys.stderr)
        sys.exit(common.SKIP)
    check(res["state"] == "succeeded", f"dump failed: {res}")
    dump = os.path.join(b.storage_url[len("file://"):], "dumps", "mg-1.tar.zst")
    check(os.path.getsize(dump) > 0, "no dump object in the store")

    st, body, _ = b.call("PUT", "/v2/service_instances/mg-1/service_bindings/b1",
                         {"service_id": SERVICE_ID, "plan_id": PLANS["mongo"], "app_guid": "a1"})
    check(st == 201, f"bind: {st} {body}")
    c = body["credentials"]
    check(c["dialect"] == "mongo" and c["size"] == os.path.getsize(dump), f"credentials {c}")

    st, body, _ = b.call("PATCH", "/v2/service_instances/mg-1",
                         {"service_id": SERVICE_ID,
                          "parameters": {"target_uri": dst_uri.replace("/?", "/copy?")}},
                         {"accepts_incomplete": "true"})
    check(st == 202, f"update: {st} {body}")
    st, res = b.wait_operation("mg-1", body["operation"], timeout=120)
    check(st == 200 and res["state"] == "succeeded", f"import: {res}")
    mongo.use(dst_uri)
    docs = mongo.find("copy", "customers")
    check(len(docs) == 1500, f"imported {len(docs)} documents")
    check(all(d["address"]["city"] != "Lyon" and d["address"]["zip"] == "69001" for d in docs),
          "address.city not anonymized")
    check("email_1" in mongo.indexes("copy", "customers"), "index not imported")

    st, body, _ = b.deprovision("mg-1", plan="mongo")
    check(st == 202 and b.wait_operation("mg-1", body["operation"])[0] == 410, "deprovision")
    check(not os.path.exists(dump), "dump object left behind")
    check(b.stop() == 0, "exit status")
    log = b.log()
    for secret in (b.password, c["password"]):
        check(secret not in log, "a secret reached the broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
