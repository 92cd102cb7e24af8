"""Starting `dsd serve` for integration tests and talking OSB to it.

    b = start_broker(storage_url="file:///tmp/x", env_overrides={...})
    status, body, headers = b.call("GET", "/v2/catalog")

The broker listens on a free loopback port; its output goes to b.log_path;
it is stopped when the test process ends (or by b.stop()). Only the Python
standard library is used.
"""

import base64
import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

import common

SERVICE_ID = "8a4f0c51-7d1e-4f3b-9c2a-6b1d5e0f9a01"
PLANS = {
    "pg": "3c1e7a52-0b6d-4e0f-8d21-9f4a6c2b7e10",
    "mysql": "5d2f8b63-1c7e-4f10-9e32-0a5b7d3c8f21",
    "mongo": "7e3a9c74-2d8f-4021-8f43-1b6c8e4d9a32",
}


class Broker:
    def __init__(self, proc, port, username, password, log_path, storage_url, env):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.username = username
        self.password = password
        self.log_path = log_path
        self.storage_url = storage_url
        self.env = env

    def call(self, method, path, body=None, query=None, version="2.17", auth=True,
             headers=None, raw_body=None, basic=None):
        """One request. Returns (status, parsed JSON body or raw bytes, headers)."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if version is not None:
            req.add_header("X-Broker-API-Version", version)
        if basic is None and auth:
            basic = (self.username, self.password)
        if basic is not None:
            tok = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            req.add_header("Authorization", "Basic " + tok)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), e.headers
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return status, parsed, hdrs

    # OSB conveniences --------------------------------------------------
    def provision(self, iid, params, plan="pg", **kw):
        body = {"service_id": SERVICE_ID, "plan_id": PLANS[plan],
                "organization_guid": "org-1", "space_guid": "space-1",
                "context": {"platform": "cloudfoundry", "organization_guid": "org-1",
                            "space_guid": "space-1", "instance_name": iid},
                "parameters": params}
        return self.call("PUT", f"/v2/service_instances/{iid}", body,
                         {"accepts_incomplete": "true"}, **kw)

    def deprovision(self, iid, plan="pg"):
        return self.call("DELETE", f"/v2/service_instances/{iid}", None,
                         {"accepts_incomplete": "true", "service_id": SERVICE_ID,
                          "plan_id": PLANS[plan]})

    def last_operation(self, iid, operation=None):
        q = {"operation": operation} if operation else None
        return self.call("GET", f"/v2/service_instances/{iid}/last_operation", query=q)

    def wait_operation(self, iid, operation=None, timeout=60):
        """Polls last_operation until it is no longer in progress.
        Returns (status, body)."""
        deadline = time.monotonic() + timeout
        while True:
            st, body, hdrs = self.last_operation(iid, operation)
            if st != 200 or body.get("state") != "in progress":
                return st, body
            common.check("Retry-After" in hdrs, "in progress without Retry-After")
            if time.monotonic() > deadline:
                raise AssertionError(f"operation on {iid} still in progress after {timeout}s")
            time.sleep(0.2)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the broker; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode


def start_broker(env_overrides=None, storage_url=None, username="broker",
                 password="broker-Secret-Pw-1234", port=None, wait=True):
    """Starts `dsd serve`. storage_url defaults to a fresh file:// directory.
    env_overrides may set a variable to None to remove it."""
    d = common.tmpdir("dsd-broker-")
    port = port or common.free_port()
    if storage_url is None:
        storage_url = "file://" + os.path.join(d, "store")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DSD_", "AWS_")) or k in ("DSD_BIN", "DSD_BUILD_DIR",
                                                           "DSD_SOURCE_DIR")}
    env.update({"PORT": str(port), "DSD_BROKER_USERNAME": username,
                "DSD_BROKER_PASSWORD": password, "DSD_STORAGE": storage_url,
                "DSD_ALLOW_DIRECT_URIS": "all", "DSD_LOG_LEVEL": "info",
                "DSD_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    for k, v in (env_overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    log_path = os.path.join(d, f"broker-{port}.log")
    proc = common.start_process([common.DSD_BIN, "serve"], env=env, log_path=log_path, cwd=d)
    b = Broker(proc, port, env.get("DSD_BROKER_USERNAME"), env.get("DSD_BROKER_PASSWORD"),
               log_path, storage_url, env)
    if wait:
        try:
            common.wait_port(port, timeout=30, proc=proc, what="dsd serve")
        except RuntimeError:
            print(b.log())
            raise
    return b


def restart(b, **kw):
    """Stops b and starts a broker with the same configuration and port."""
    b.stop()
    overrides = {k: b.env.get(k) for k in b.env if k.startswith(("DSD_", "AWS_"))}
    return start_broker(env_overrides=overrides, storage_url=b.storage_url,
                        username=b.username, password=b.password, port=b.port, **kw)
