"""The user flow with instance names resolved through the Cloud Controller:
`cf create-service ... -c '{"source":"sourcedb"}'` then
`cf update-service ... -c '{"target":"clonedb"}'`, against a real
PostgreSQL, a real `dsd serve` and the CC/UAA double (tests/harness/
ccdouble.py) running in this process.

  a) a dump of "sourcedb" (key credentials in the "uri" shape) by a space
     developer, then an import into "clonedb" (host/port/name/username/
     password shape) by a platform call: both succeed, the data is equal,
     each operation created exactly one service key named "dsd-<operation
     id>" and deleted it, and no key is left;
  b) an unknown name, a name from another space, a mysql instance for a pg
     plan (as source and as target), an instance with an operation in
     progress, a CC that answers 422 to the key creation, and a user who is
     not a space developer: each operation fails with a description that
     says exactly that, no dump object exists, no key is left;
  c) an incomplete CC configuration: the broker refuses to start and names
     the missing variable;
  e) neither the key credentials' passwords nor the UAA client secret reach
     the broker's log or its store.
Skipped (77) when PostgreSQL or the pg dialect is not available."""

import base64
import json
import os
import sys
import uuid

import common
from broker import SERVICE_ID, start_broker
from ccdouble import CCDouble, _unprocessable
from pg import start_postgres

check = common.check
SPACE = "space-1"  # what tests/harness/broker.py sends as space_guid
CLONE_PW = "Clone-Pw-" + uuid.uuid4().hex[:12]


class RecordingDouble(CCDouble):
    """The double, plus a history of the keys created and deleted, and a set
    of instances whose key creation CC refuses with 422 although the
    instance itself looks idle (the race the client must also handle)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history = []           # ("create" | "delete", key name)
        self.refuse_keys_on = set()  # instance guids

    def _create_binding(self, body):
        req = json.loads(body or b"{}")
        sig = (((req.get("relationships") or {}).get("service_instance") or {})
               .get("data") or {}).get("guid")
        if sig in self.refuse_keys_on:
            raise _unprocessable("There is an operation in progress for the service instance.")
        out = super()._create_binding(body)
        self.history.append(("create", req.get("name")))
        return out

    def _delete_binding(self, b):
        self.history.append(("delete", b["name"]))
        return super()._delete_binding(b)

    def events(self, name):
        with self.lock:
            return [e for e, n in self.history if n == name]


def identity(user_guid):
    doc = json.dumps({"user_id": user_guid}).encode()
    return {"X-Broker-API-Originating-Identity":
            "cloudfoundry " + base64.b64encode(doc).decode()}


def dump_path(b, iid):
    return os.path.join(b.storage_url[len("file://"):], "dumps", iid + ".tar.zst")


def op_record(b, iid, op):
    path = os.path.join(b.storage_url[len("file://"):], "instances", iid, "operations",
                        op + ".json")
    with open(path) as f:
        return json.load(f)


def check_key_cycle(cc, b, iid, op):
    """One key named after the operation, created once and deleted, and the
    record says so."""
    name = "dsd-" + op
    ev = cc.events(name)
    check(ev.count("create") == 1 and ev.count("delete") >= 1 and ev[0] == "create",
          f"{op}: key events {ev} (history {cc.history})")
    check(cc.live_keys() == 0, f"{op}: live keys {cc.key_names()}")
    rec = op_record(b, iid, op)
    keys = [t for t in rec["transient"] if t.get("type") == "service_key"]
    check(len(keys) == 1 and keys[0]["name"] == name and keys[0]["deleted"] is True
          and keys[0].get("guid") and keys[0].get("instance_guid"),
          f"{op}: transient record {keys}")


def expect_failure(cc, b, iid, op, words, provision=True):
    st, res = b.wait_operation(iid, op, timeout=120)
    check(st == 200 and res["state"] == "failed", f"{iid}: expected failure, got {st} {res}")
    for w in words:
        check(w in res["description"], f"{iid}: {w!r} not in description {res['description']!r}")
    if provision:
        check(not os.path.exists(dump_path(b, iid)), f"{iid}: a dump object exists")
    check(cc.live_keys() == 0, f"{iid}: live keys {cc.key_names()}")
    check(cc.events("dsd-" + op).count("create") == 0, f"{iid}: a key was created")
    return res


def main():
    pg = start_postgres()
    pg["createdb"]("src")
    pg["create_role"]("clone_owner", CLONE_PW)
    pg["createdb"]("clone", owner="clone_owner")
    pg["psql"]("src", "CREATE TABLE customers (id int PRIMARY KEY, email text, note text);"
                      "INSERT INTO customers SELECT g, 'u' || g || '@example.com',"
                      " repeat('x', g % 50) FROM generate_series(1, 5000) g;"
                      "CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES"
                      " customers, total numeric(10,2));"
                      "INSERT INTO orders SELECT g, 1 + g % 5000, g * 1.5"
                      " FROM generate_series(1, 3000) g;")

    cc = RecordingDouble()
    cc.start()
    common.on_exit(cc.stop)
    cc.add_space(SPACE)
    other_space = cc.add_space()
    dev, auditor = str(uuid.uuid4()), str(uuid.uuid4())
    cc.add_user_role(dev, SPACE, "space_developer")
    cc.add_user_role(auditor, SPACE, "space_auditor")
    cc.add_user_role(auditor, other_space, "space_developer")
    cc.add_instance("sourcedb", SPACE, offering="postgresql-db", plan="small",
                    credentials={"uri": pg["uri"]("src")})
    cc.add_instance("clonedb", SPACE, offering="postgresql-db", plan="medium",
                    credentials={"host": "127.0.0.1", "port": pg["port"], "name": "clone",
                                 "username": "clone_owner", "password": CLONE_PW})
    cc.add_instance("mysqldb", SPACE, offering="p.mysql", plan="db-small",
                    credentials={"uri": "mysql://u:Mysql-Pw-123@127.0.0.1:3306/x"})
    cc.add_instance("busydb", SPACE, offering="postgresql-db", in_progress=True,
                    credentials={"uri": pg["uri"]("src")})
    racy = cc.add_instance("racydb", SPACE, offering="postgresql-db",
                           credentials={"uri": pg["uri"]("src")})
    cc.refuse_keys_on.add(racy)
    cc.add_instance("elsewhere", other_space, offering="postgresql-db",
                    credentials={"uri": pg["uri"]("src")})

    cf = {"DSD_CF_API": cc.url, "DSD_CF_CLIENT_ID": cc.client_id,
          "DSD_CF_CLIENT_SECRET": cc.client_secret, "DSD_ALLOW_DIRECT_URIS": None}

    # c) incomplete configuration: refused at start, naming the variable
    for missing in ("DSD_CF_CLIENT_SECRET", "DSD_CF_CLIENT_ID", "DSD_CF_API"):
        env = dict(cf)
        env[missing] = None
        bad = start_broker(env, wait=False)
        try:
            rc = bad.proc.wait(timeout=20)
        except Exception:
            bad.stop()
            raise AssertionError(f"broker started without {missing}")
        check(rc != 0 and missing in bad.log(),
              f"without {missing}: exit {rc}, log {bad.log()!r}")

    b = start_broker(cf)

    # a) the flow: dump by a space developer ...
    st, body, _ = b.provision("dump-1", {"source": "sourcedb"}, headers=identity(dev))
    check(st == 202, f"provision: {st} {body}")
    op1 = body["operation"]
    st, res = b.wait_operation("dump-1", op1, timeout=240)
    check(st == 200, f"last_operation: {st}")
    if res["state"] == "failed" and "not built yet" in res["description"]:
        print(f"skipping: {res['description']}", file=sys.stderr)
        sys.exit(common.SKIP)
    check(res["state"] == "succeeded", f"dump from sourcedb: {res}")
    check(os.path.getsize(dump_path(b, "dump-1")) > 0, "no dump object")
    check_key_cycle(cc, b, "dump-1", op1)
    check(f"user {dev} is a space developer" in b.log(), "the role check is not logged")

    # ... import by a platform call (no identity), space from the record
    st, body, _ = b.call("PATCH", "/v2/service_instances/dump-1",
                         {"service_id": SERVICE_ID, "parameters": {"target": "clonedb"}},
                         {"accepts_incomplete": "true"})
    check(st == 202, f"update: {st} {body}")
    op2 = body["operation"]
    st, res = b.wait_operation("dump-1", op2, timeout=240)
    check(st == 200 and res["state"] == "succeeded", f"import into clonedb: {res}")
    check_key_cycle(cc, b, "dump-1", op2)
    check("space developer check of \"clonedb\" is skipped" in b.log(),
          "the skipped role check is not logged")
    q = ("SELECT count(*), sum(length(email)), (SELECT sum(total) FROM orders) FROM customers")
    got = pg["psql"]("clone", q, user="clone_owner", password=CLONE_PW).strip()
    want = pg["psql"]("src", q).strip()
    check(got == want, f"imported {got} != source {want}")

    # b) failures before any data moves
    cases = [
        ("bad-unknown", "nosuch", dev, ['no service instance named "nosuch" in this space']),
        ("bad-space", "elsewhere", dev, ['no service instance named "elsewhere" in this space']),
        ("bad-dialect", "mysqldb", dev,
         ['source service instance "mysqldb" is a mysql database but this service plan is '
          'postgresql']),
        ("bad-busy", "busydb", dev, ['service instance "busydb" has an operation in progress']),
        ("bad-422", "racydb", dev,
         ["the cloud controller refused to create service key",
          "There is an operation in progress for the service instance"]),
        ("bad-user", "sourcedb", auditor,
         [f'user {auditor} is not a space developer in the space of service instance '
          f'"sourcedb"']),
    ]
    for iid, name, user, words in cases:
        st, body, _ = b.provision(iid, {"source": name}, headers=identity(user))
        check(st == 202, f"{iid}: {st} {body}")
        expect_failure(cc, b, iid, body["operation"], words)
        # CF's orphan mitigation: the DELETE after a failed provision succeeds
        st, body, _ = b.deprovision(iid)
        check(st == 202 and b.wait_operation(iid, body["operation"])[0] == 410,
              f"{iid}: delete after failure")

    # a target of another dialect than the dump, and an unknown target
    for name, words in (("mysqldb", ['target service instance "mysqldb" is a mysql database '
                                     'but this dump is postgresql']),
                        ("nosuch", ['no service instance named "nosuch" in this space'])):
        st, body, _ = b.call("PATCH", "/v2/service_instances/dump-1",
                             {"service_id": SERVICE_ID, "parameters": {"target": name},
                              "context": {"platform": "cloudfoundry", "space_guid": SPACE}},
                             {"accepts_incomplete": "true"}, headers=identity(dev))
        check(st == 202, f"update to {name}: {st} {body}")
        res = expect_failure(cc, b, "dump-1", body["operation"], words, provision=False)
        check(res.get("instance_usable") is True, f"failed import leaves the dump usable: {res}")
    check(os.path.exists(dump_path(b, "dump-1")), "a failed import touched the dump")

    # e) no secret in the store while its records exist
    secrets = {"pg password": pg["password"], "clone password": CLONE_PW,
               "client secret": cc.client_secret, "mysql password": "Mysql-Pw-123"}
    store = b.storage_url[len("file://"):]
    nrec = 0
    for root, _, files in os.walk(store):
        for n in files:
            with open(os.path.join(root, n), "rb") as f:
                data = f.read()
            nrec += n.endswith(".json")
            for what, s in secrets.items():
                check(s.encode() not in data, f"the {what} is stored in {n}")
    check(nrec >= 4, f"only {nrec} state records to check")

    st, body, _ = b.deprovision("dump-1")
    check(st == 202 and b.wait_operation("dump-1", body["operation"])[0] == 410, "deprovision")
    check(cc.live_keys() == 0, f"live keys at the end: {cc.key_names()}")
    check(b.stop() == 0, "exit status")

    # e) no secret in the log or the store (checked above)
    log = b.log()
    for what, s in secrets.items():
        check(s not in log, f"the {what} reached the broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
