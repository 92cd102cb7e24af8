"""The transient service key of a dump whose operation does not end normally,
with a real PostgreSQL source reached through the CC/UAA double
(tests/harness/ccdouble.py, in this process):

  c) cancel: a DELETE while the dump of a large table runs cancels it; the
     key is deleted before the deprovision completes;
  d) crash: the broker is killed (SIGKILL) the moment the double sees the
     key created (its guid not yet recorded: recovery finds it by name), and
     once more while the dump runs (guid recorded); a second broker on the
     same store (short DSD_LEASE_TTL) reports the operation failed because
     the broker stopped, and deletes the key;
     and with the Cloud Controller down during recovery: the operation fails
     saying the key could not be deleted yet, the record is kept, and the
     DELETE of the instance (CF's orphan mitigation) deletes the key once CC
     is back;
  e) no key password and no client secret in any broker log.
Skipped (77) when PostgreSQL or the pg dialect is not available."""

import json
import os
import signal
import sys
import time

import common
from broker import start_broker
from ccdouble import CCDouble
from pg import start_postgres

check = common.check
SPACE = "space-1"  # what tests/harness/broker.py sends as space_guid


class RecordingDouble(CCDouble):
    """The double plus a history of key creations and deletions by name."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history = []

    def _create_binding(self, body):
        out = super()._create_binding(body)
        self.history.append(("create", json.loads(body)["name"]))
        return out

    def _delete_binding(self, b):
        self.history.append(("delete", b["name"]))
        return super()._delete_binding(b)

    def events(self, name):
        with self.lock:
            return [e for e, n in self.history if n == name]


def wait_for(cond, what, timeout=60, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def wait_description(b, iid, word, timeout=120):
    """Waits until the running operation's description contains word."""
    def probe():
        st, res, _ = b.last_operation(iid)
        check(st == 200, f"last_operation {iid}: {st}")
        if res["state"] != "in progress":
            if "not built yet" in res["description"]:
                print(f"skipping: {res['description']}", file=sys.stderr)
                sys.exit(common.SKIP)
            raise AssertionError(f"{iid} ended before it could be interrupted: {res}")
        return word in res["description"]
    wait_for(probe, f"{iid} to report {word!r}", timeout, 0.05)


def key_record(b, iid, op):
    path = os.path.join(b.storage_url[len("file://"):], "instances", iid, "operations",
                        op + ".json")
    with open(path) as f:
        rec = json.load(f)
    keys = [t for t in rec["transient"] if t.get("type") == "service_key"]
    check(len(keys) == 1 and keys[0]["name"] == "dsd-" + op, f"key record of {op}: {keys}")
    return keys[0]


def main():
    pg = start_postgres()
    pg["createdb"]("big")
    pg["psql"]("big", "CREATE TABLE t (id int, a text, b text);"
                      "INSERT INTO t SELECT g, md5(g::text), repeat(md5(g::text), 3)"
                      " FROM generate_series(1, 2000000) g;")
    cc = RecordingDouble()
    cc.start()
    common.on_exit(cc.stop)
    cc.add_space(SPACE)
    cc.add_instance("bigdb", SPACE, offering="postgresql-db", credentials={"uri": pg["uri"]("big")})
    env = {"DSD_CF_API": cc.url, "DSD_CF_CLIENT_ID": cc.client_id,
           "DSD_CF_CLIENT_SECRET": cc.client_secret, "DSD_ALLOW_DIRECT_URIS": None,
           "DSD_LEASE_TTL": "3"}
    brokers = []

    def broker(**kw):
        x = start_broker(env, **kw)
        brokers.append(x)
        return x

    a = broker()

    # c) cancel by DELETE while the dump runs
    st, body, _ = a.provision("cancel-1", {"source": "bigdb"})
    check(st == 202, f"provision: {st} {body}")
    op = body["operation"]
    wait_description(a, "cancel-1", "dumping")
    check(cc.live_keys() == 1, f"no live key during the dump: {cc.key_names()}")
    st, body, _ = a.deprovision("cancel-1")
    check(st == 202, f"delete during dump: {st} {body}")
    st, _ = a.wait_operation("cancel-1", body["operation"], timeout=120)
    check(st == 410, f"cancel outcome: {st}")
    check(cc.live_keys() == 0, f"key left after cancel: {cc.key_names()}")
    check(cc.events("dsd-" + op) == ["create", "delete"], f"cancel: {cc.history}")
    check("canceled" in a.log(), "the cancel is not in the log")

    # d1) SIGKILL the moment the key exists, before its guid is recorded
    st, body, _ = a.provision("kill-1", {"source": "bigdb"})
    check(st == 202, f"provision: {st}")
    op = body["operation"]
    wait_for(lambda: cc.live_keys() == 1, "the key of kill-1")
    a.stop(signal.SIGKILL)
    rec = key_record(a, "kill-1", op)
    check(rec["deleted"] is False and rec.get("instance_guid"), f"record before recovery: {rec}")
    b = broker(storage_url=a.storage_url, username=a.username, password=a.password)
    st, res = b.wait_operation("kill-1", op, timeout=60)
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"after SIGKILL: {res}")
    check(cc.live_keys() == 0, f"key left after recovery: {cc.key_names()}")
    rec = key_record(b, "kill-1", op)
    check(rec["deleted"] is True, f"record after recovery: {rec}")
    st, body, _ = b.deprovision("kill-1")
    check(st == 202 and b.wait_operation("kill-1", body["operation"])[0] == 410,
          "delete after recovery")

    # d2) SIGKILL while the dump runs (guid recorded)
    st, body, _ = b.provision("kill-2", {"source": "bigdb"})
    check(st == 202, f"provision: {st}")
    op = body["operation"]
    wait_description(b, "kill-2", "dumping")
    check(key_record(b, "kill-2", op).get("guid"), "the key's guid is not recorded")
    b.stop(signal.SIGKILL)
    c = broker(storage_url=a.storage_url, username=a.username, password=a.password)
    st, res = c.wait_operation("kill-2", op, timeout=60)
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"],
          f"after SIGKILL during the dump: {res}")
    check(cc.live_keys() == 0, f"key left after recovery: {cc.key_names()}")
    check(cc.events("dsd-" + op) == ["create", "delete"], f"kill-2: {cc.history}")

    # d3) SIGKILL, then recovery while the Cloud Controller is down
    st, body, _ = c.provision("kill-3", {"source": "bigdb"})
    check(st == 202, f"provision: {st}")
    op = body["operation"]
    wait_description(c, "kill-3", "dumping")
    c.stop(signal.SIGKILL)
    port = int(cc.url.rsplit(":", 1)[1])
    cc.stop()
    d = broker(storage_url=a.storage_url, username=a.username, password=a.password)
    st, res = d.wait_operation("kill-3", op, timeout=120)
    check(st == 200 and res["state"] == "failed" and "stopped" in res["description"]
          and "could not be deleted yet" in res["description"], f"recovery without CC: {res}")
    rec = key_record(d, "kill-3", op)
    check(rec["deleted"] is False and rec.get("last_error"), f"record kept: {rec}")
    check(cc.live_keys() == 1, "the double lost the key")
    cc.start(port)
    st, body, _ = d.deprovision("kill-3")
    check(st == 202, f"delete after recovery without CC: {st} {body}")
    st, _ = d.wait_operation("kill-3", body["operation"], timeout=120)
    check(st == 410, f"delete with CC back: {st}")
    check(cc.live_keys() == 0, f"key left: {cc.key_names()}")
    check(cc.events("dsd-" + op)[-1] == "delete", f"kill-3: {cc.history}")

    for x in brokers:
        rc = x.stop()
        check(rc in (0, -signal.SIGKILL), f"broker exit status {rc} (see {x.log_path})")
        log = x.log()
        check(pg["password"] not in log, "database password in a broker log")
        check(cc.client_secret not in log, "client secret in a broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
