"""Integration test of `dsd serve` configuration: refusing to start without
credentials, --help, DSD_ALLOW_DIRECT_URIS modes, DSD_CF_API, and a clean
exit on SIGINT."""

import os
import signal
import subprocess
import sys

import common
from broker import start_broker

check = common.check


def run_serve(env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSD_", "AWS_"))}
    env.update({"PORT": str(common.free_port()), "DSD_STORAGE": "file://" + common.tmpdir()})
    for k, v in env_overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run([common.DSD_BIN, "serve"], env=env, capture_output=True, text=True,
                          timeout=20)


def main():
    # required credentials
    for missing in ({"DSD_BROKER_USERNAME": "u"}, {"DSD_BROKER_PASSWORD": "p-1234"}, {}):
        r = run_serve(missing)
        check(r.returncode != 0, f"started without credentials: {missing}")
        check("DSD_BROKER_USERNAME" in r.stderr and "DSD_BROKER_PASSWORD" in r.stderr,
              f"message does not name the variables: {r.stderr}")
        check("p-1234" not in r.stderr, "password printed")
    r = run_serve({"DSD_BROKER_USERNAME": "u", "DSD_BROKER_PASSWORD": "pw-1234",
                   "DSD_ALLOW_DIRECT_URIS": "maybe"})
    check(r.returncode != 0 and "DSD_ALLOW_DIRECT_URIS" in r.stderr, f"bad mode: {r.stderr}")
    r = run_serve({"DSD_BROKER_USERNAME": "u", "DSD_BROKER_PASSWORD": "pw-1234", "PORT": "x"})
    check(r.returncode != 0 and "PORT" in r.stderr, f"bad port: {r.stderr}")
    r = run_serve({"DSD_BROKER_USERNAME": "u", "DSD_BROKER_PASSWORD": "pw-1234",
                   "DSD_STORAGE": "file://relative/dir"})
    check(r.returncode != 0 and ("store" in r.stderr or "DSD_STORAGE" in r.stderr),
          f"relative file store: {r.stderr}")
    r = subprocess.run([common.DSD_BIN, "serve", "--help"], capture_output=True, text=True)
    check(r.returncode == 0 and "DSD_BROKER_PASSWORD" in r.stdout and "DSD_ALLOW_DIRECT_URIS" in r.stdout,
          "serve --help")

    # DSD_ALLOW_DIRECT_URIS=true: loopback and link-local refused
    b = start_broker({"DSD_ALLOW_DIRECT_URIS": "true"})
    for uri in ("postgresql://u:p@127.0.0.1:5432/db", "postgresql://u:p@localhost/db",
                "postgresql://u:p@[::1]/db", "postgresql://u:p@169.254.169.254/db"):
        st, body, _ = b.provision("t1", {"source_uri": uri})
        check(st == 400 and "loopback" in body["description"], f"{uri}: {st} {body}")
    st, body, _ = b.provision("t1", {"source_uri": "postgresql://u:p@db.example.com/db"})
    check(st == 202, f"public host refused: {st} {body}")
    check(b.stop(signal.SIGINT) == 0, "SIGINT exit status")
    check("received SIGINT" in b.log(), "no shutdown line on SIGINT")

    # false (the default): source_uri refused; source needs DSD_CF_API
    b = start_broker({"DSD_ALLOW_DIRECT_URIS": None})
    st, body, _ = b.provision("t2", {"source_uri": "postgresql://u:p@db.example.com/db"})
    check(st == 400 and "DSD_ALLOW_DIRECT_URIS" in body["description"], f"false: {st} {body}")
    st, body, _ = b.provision("t2", {"source": "mydb"})
    check(st == 400 and "DSD_CF_API" in body["description"], f"no CF API: {st} {body}")
    b.stop()

    # DSD_CF_API without DSD_CF_CLIENT_ID: refused at start, naming it
    b = start_broker({"DSD_CF_API": "https://api.example.com",
                      "DSD_CF_CLIENT_SECRET": "cf-Secret-777"}, wait=False)
    check(b.proc.wait(timeout=20) != 0 and "DSD_CF_CLIENT_ID" in b.log(),
          f"incomplete CF configuration accepted: {b.log()}")
    check("cf-Secret-777" not in b.log(), "CF client secret in the log")
    # with the CC configured, a name is accepted; a CC that cannot be
    # reached fails the operation and says so
    b = start_broker({"DSD_CF_API": f"http://127.0.0.1:{common.free_port()}",
                      "DSD_CF_CLIENT_ID": "dsd", "DSD_CF_CLIENT_SECRET": "cf-Secret-777"})
    st, body, _ = b.provision("t3", {"source": "mydb"})
    check(st == 202, f"name with CF API: {st} {body}")
    st, res = b.wait_operation("t3")
    check(st == 200 and res["state"] == "failed" and "cloud controller" in res["description"],
          f"name resolution outcome: {res}")
    b.stop()
    check("cf-Secret-777" not in b.log(), "CF client secret in the log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
