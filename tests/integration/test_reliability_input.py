"""Bad input at the HTTP edge of `dsd serve` (issue 9), beyond
test_broker_api.py: a chunked body over 1 MiB gets 413; binding ids with
'/', '..' or control characters get 400 and never reach a storage key; a
raw control character in a path gets 400; in DSD_ALLOW_DIRECT_URIS=true
mode, URIs that a database driver would read as a loopback host or local
socket (found by tests/fuzz/fuzz_conn_uri.c) get 400; garbage requests on
the socket never take the broker down."""

import http.client
import os
import socket
import sys

import common
from broker import PLANS, SERVICE_ID, start_broker

check = common.check


def raw(b, data, timeout=10):
    """Sends data on a fresh connection and returns what comes back. The
    broker may close early on garbage (a reset or ENOTCONN here), which is
    a fine answer: what matters is that it keeps serving."""
    out = b""
    s = socket.create_connection(("127.0.0.1", b.port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        s.close()
    return out


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def main():
    if not os.path.exists(common.DSD_BIN):
        sys.exit(common.SKIP)
    b = start_broker({"DSD_ALLOW_DIRECT_URIS": "true"})
    store = b.storage_url[len("file://"):]
    auth = __import__("base64").b64encode(f"{b.username}:{b.password}".encode()).decode()

    # chunked body over 1 MiB: 413 (no Content-Length to refuse it early)
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=30)
    conn.putrequest("PUT", "/v2/service_instances/chunky?accepts_incomplete=true")
    conn.putheader("Authorization", "Basic " + auth)
    conn.putheader("X-Broker-API-Version", "2.17")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        piece = b" " * 65536
        conn.send(b"1\r\n{\r\n")
        for _ in range(17):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"1\r\n}\r\n0\r\n\r\n")
        st = conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        st = 413  # the broker may close before reading it all; checked below
        r = raw(b, b"GET /v2/catalog HTTP/1.0\r\n\r\n")
        check(r, "the broker died on a chunked body")
    conn.close()
    check(st == 413, f"chunked body over 1 MiB: {st}")

    # a valid instance to bind to (the provision fails fast: no such host)
    st, body, _ = b.provision("inst-ok", {"source_uri": "postgresql://u:p@db.invalid/x"})
    check(st == 202, f"provision: {st} {body}")
    b.wait_operation("inst-ok", timeout=60)
    # A well-formed unknown binding id gives 404/410, so a 400 here is the
    # id check and not some other refusal. "a%00b" stays undecoded at the
    # HTTP layer (a NUL would truncate it to the valid id "a").
    st, _, _ = b.call("GET", "/v2/service_instances/inst-ok/service_bindings/good-id")
    check(st == 404, f"unknown well-formed binding id: {st}")
    for bad in ("a%00b", "a%2Fb", "..", "x..y", "%2E%2E", "b" * 256, "a%0Ab", "a%01b", "a%20b", "a%5Cb",
                "a%7Fb", "%C3%A9"):
        st, body, _ = b.call("PUT", f"/v2/service_instances/inst-ok/service_bindings/{bad}",
                             {"service_id": SERVICE_ID, "plan_id": PLANS["pg"], "app_guid": "a"})
        check(st == 400 and "malformed" in body["description"], f"bad binding id {bad!r}: {st} {body}")
        st, body, _ = b.call("GET", f"/v2/service_instances/inst-ok/service_bindings/{bad}")
        check(st == 400, f"bad binding id on fetch {bad!r}: {st}")
        st, _, _ = b.call("DELETE", f"/v2/service_instances/inst-ok/service_bindings/{bad}",
                          query={"service_id": SERVICE_ID, "plan_id": PLANS["pg"]})
        check(st == 400, f"bad binding id on unbind {bad!r}: {st}")
    for root, dirs, files in os.walk(store):
        for n in dirs + files:
            check(".." not in n and "\n" not in n and "\\" not in n and " " not in n,
                  f"odd name in the store: {os.path.join(root, n)}")

    # raw control characters and garbage on the socket
    r = raw(b, b"GET /v2/service_instances/a\x01b HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Basic " + auth.encode() + b"\r\nX-Broker-API-Version: 2.17\r\n\r\n")
    check(status_of(r) in (400, 404, None), f"control character in the path: {r[:80]!r}")
    check(status_of(r) != 200, "control character accepted")
    for junk in (b"\x00" * 100, b"GET / HTTP/9.9\r\n\r\n", b"PUT /v2/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n", b"\r\n" * 1000):
        raw(b, junk)
    st, _, _ = b.call("GET", "/v2/catalog")
    check(st == 200, f"broker unwell after garbage: {st}")

    # direct URIs in "true" mode: loopback readings refused, with no password echoed
    for uri in ("postgresql://u:Pw-Secret-1@db.example.org/x?host=/tmp",
                "postgresql://u:Pw-Secret-1@db.example.org/x?hostaddr=127.0.0.1",
                "postgresql://u@127.0.0.1,@db.example.org/x",
                "postgresql://db.example.org?x@127.0.0.1/x",
                "postgresql://u@db.example.org#,127.0.0.1/x",
                "postgresql://u@%6c%6f%63%61%6c%68%6f%73%74/x",
                "postgresql://u:Pw-Secret-1@127.0.0.1/x"):
        st, body, _ = b.provision("uri-x", {"source_uri": uri})
        check(st == 400, f"{uri}: {st} {body}")
        check("Pw-Secret-1" not in body["description"], "password echoed")
    st, body, _ = b.provision("uri-ok", {"source_uri": "postgresql://u:Pw-Secret-1@db.example.org/x"})
    check(st == 202, f"a routable host refused: {st} {body}")
    check(b.stop() == 0, "exit status")
    check("Pw-Secret-1" not in b.log(), "password in the log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
