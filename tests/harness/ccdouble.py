"""A Cloud Controller v3 + UAA test double.

Cloud Foundry cannot run here, so the tests of the broker's CC client (and the
broker tests that resolve instance names) talk to this double instead. It
follows the shapes of the CC v3 API documents (cloudfoundry/cloud_controller_ng
docs/v3) for the calls dsd makes:

  GET  /                                   root: links.uaa, links.login, ...
  POST {uaa}/oauth/token                   client credentials grant, basic auth
  GET  /v3/service_instances               names, space_guids, type, fields[...]
  GET  /v3/service_plans/:guid, /v3/service_offerings/:guid
  GET  /v3/roles                           types, space_guids, user_guids
  POST /v3/service_credential_bindings     type key -> 202 + Location job
  GET  /v3/service_credential_bindings     names, service_instance_guids, type
  GET  /v3/service_credential_bindings/:guid[/details]
  DELETE /v3/service_credential_bindings/:guid   -> 202 + Location job
  GET  /v3/jobs/:guid                      PROCESSING -> COMPLETE after N polls

Lists use the pagination envelope {"pagination": {"total_results",
"total_pages", "first", "last", "next", "previous"}, "resources": [...]};
errors use {"errors": [{"code", "title", "detail"}]}. Every /v3 call needs a
bearer token the double issued (401 CF-InvalidAuthToken otherwise).

In-process use:

    from ccdouble import start_cc_double
    cc = start_cc_double()
    space = cc.add_space()
    cc.add_instance("sourcedb", space, offering="postgresql-db",
                    credentials={"uri": "postgres://u:p@127.0.0.1:5432/db"})
    cc.add_user_role(user_guid, space, "space_developer")
    ... DSD_CF_API=cc.url DSD_CF_CLIENT_ID=cc.client_id ...
    assert cc.live_keys() == 0
    cc.stop()

Out of process (for broker tests that run the double as a server):

    python3 ccdouble.py --port N --seed seed.json

with seed.json {"client_id", "client_secret", "expires_in", "job_polls",
"spaces": [guid...], "instances": [{"name", "space", "offering", "plan",
"credentials", "in_progress", "type", "guid"}], "roles": [{"user", "space",
"type"}]}. The control endpoints GET /_double/state (live keys, counters) and
POST /_double/expire_tokens drive it from another process.
"""

import argparse
import base64
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, __import__("os").path.dirname(__file__))


def _now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CCError(Exception):
    """An answer in CC's error envelope."""

    def __init__(self, status, code, title, detail):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail

    def body(self):
        return {"errors": [{"code": self.code, "title": self.title, "detail": self.detail}]}


def _not_found(what):
    return CCError(404, 10010, "CF-ResourceNotFound", f"{what} not found")


def _unprocessable(detail):
    return CCError(422, 10008, "CF-UnprocessableEntity", detail)


class CCDouble:
    """State of the double; all methods are thread-safe (one lock)."""

    def __init__(self, client_id="dsd-broker", client_secret=None, expires_in=3600,
                 job_polls=2):
        self.client_id = client_id
        self.client_secret = client_secret or ("secret-" + secrets.token_hex(12))
        self.expires_in = expires_in
        self.job_polls = job_polls          # GETs of a job before it completes
        self.lock = threading.RLock()  # handle() calls state() with it held
        self.spaces = set()
        self.instances = {}                 # guid -> dict
        self.plans = {}                     # guid -> {"guid","name","offering_guid"}
        self.offerings = {}                 # guid -> {"guid","name"}
        self.roles = []                     # dicts user, space, type, guid
        self.bindings = {}                  # guid -> dict (live keys)
        self.jobs = {}                      # guid -> dict
        self.tokens = {}                    # token -> expiry (epoch seconds)
        self.reject_all_tokens = False      # every CC call gets 401
        self.fail_jobs = None               # detail text: jobs end FAILED
        self.fail_job_operation = None      # only jobs of this operation (None: all)
        self.injected = []                  # [method, path prefix, status, count]
        self.requests = []                  # (method, path) of every request
        self.token_requests = 0
        self.unauthorized = 0
        self.per_page_default = 50
        # Not CC behaviour, a test aid: ignore the names filter so that a
        # lookup has several pages to walk and must match the name itself.
        self.loose_name_filter = False
        # Not CC behaviour, a test aid: base of the Location links of jobs, to
        # check that the client does not send its token elsewhere.
        self.job_link_base = None
        self.url = None
        self._server = None
        self._thread = None

    # ---- seeding -------------------------------------------------------

    def add_space(self, guid=None):
        guid = guid or str(uuid.uuid4())
        with self.lock:
            self.spaces.add(guid)
        return guid

    def _offering(self, name):
        for o in self.offerings.values():
            if o["name"] == name:
                return o
        o = {"guid": str(uuid.uuid4()), "name": name}
        self.offerings[o["guid"]] = o
        return o

    def _plan(self, offering_guid, name):
        for p in self.plans.values():
            if p["offering_guid"] == offering_guid and p["name"] == name:
                return p
        p = {"guid": str(uuid.uuid4()), "name": name, "offering_guid": offering_guid}
        self.plans[p["guid"]] = p
        return p

    def add_instance(self, name, space_guid, offering="postgresql-db", plan="small",
                     credentials=None, in_progress=False, type="managed", guid=None):
        """Adds a service instance; credentials are what key details return.
        in_progress: last_operation is an update in progress (key create -> 422)."""
        guid = guid or str(uuid.uuid4())
        with self.lock:
            self.spaces.add(space_guid)
            plan_guid = None
            if type == "managed":
                o = self._offering(offering)
                plan_guid = self._plan(o["guid"], plan)["guid"]
            self.instances[guid] = {
                "guid": guid, "name": name, "space": space_guid, "type": type,
                "plan_guid": plan_guid, "credentials": credentials or {},
                "in_progress": in_progress, "created_at": _now_iso()}
        return guid

    def set_in_progress(self, instance_guid, flag):
        with self.lock:
            self.instances[instance_guid]["in_progress"] = flag

    def add_user_role(self, user_guid, space_guid, role_type="space_developer"):
        with self.lock:
            self.roles.append({"guid": str(uuid.uuid4()), "user": user_guid,
                               "space": space_guid, "type": role_type})

    def expire_tokens(self):
        """Invalidates every token issued so far (the next CC call gets 401)."""
        with self.lock:
            self.tokens.clear()

    def inject_failure(self, method, path_prefix, status, count=1):
        """The next count requests matching method and path prefix get status."""
        with self.lock:
            self.injected.append([method, path_prefix, status, count])

    # ---- inspection ----------------------------------------------------

    def live_keys(self):
        with self.lock:
            return len(self.bindings)

    def key_names(self):
        with self.lock:
            return sorted(b["name"] for b in self.bindings.values())

    def state(self):
        with self.lock:
            return {"live_keys": len(self.bindings),
                    "key_names": sorted(b["name"] for b in self.bindings.values()),
                    "token_requests": self.token_requests,
                    "unauthorized": self.unauthorized,
                    "requests": len(self.requests)}

    # ---- server --------------------------------------------------------

    def start(self, port=0, host="127.0.0.1", tls_cert=None, tls_key=None):
        """Serves on host:port (0: a free port); HTTPS with tls_cert/tls_key."""
        double = self

        class Handler(_Handler):
            pass
        Handler.double = double
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- request handling (called with the lock held) -----------------

    def _check_token(self, headers):
        auth = headers.get("Authorization", "")
        scheme, _, tok = auth.partition(" ")
        exp = self.tokens.get(tok.strip()) if scheme.lower() == "bearer" else None
        if self.reject_all_tokens or exp is None or exp < time.time():
            self.unauthorized += 1
            raise CCError(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")

    def _paginate(self, path, query, resources, included=None):
        per_page = int(query.get("per_page", [self.per_page_default])[0])
        page = int(query.get("page", ["1"])[0])
        if per_page < 1 or per_page > 5000 or page < 1:
            raise CCError(400, 10005, "CF-BadQueryParameter",
                          "Per page must be between 1 and 5000")
        total = len(resources)
        pages = max(1, (total + per_page - 1) // per_page)

        def href(p):
            q = {k: v for k, v in query.items() if k not in ("page", "per_page")}
            q["page"] = [str(p)]
            q["per_page"] = [str(per_page)]
            return {"href": self.url + path + "?" + urllib.parse.urlencode(q, doseq=True)}
        body = {"pagination": {
                    "total_results": total, "total_pages": pages,
                    "first": href(1), "last": href(pages),
                    "next": href(page + 1) if page < pages else None,
                    "previous": href(page - 1) if page > 1 else None},
                "resources": resources[(page - 1) * per_page: page * per_page]}
        if included is not None:
            body["included"] = included
        return body

    def _instance_json(self, si):
        lo = {"type": "update" if si["in_progress"] else "create",
              "state": "in progress" if si["in_progress"] else "succeeded",
              "description": "", "created_at": si["created_at"], "updated_at": si["created_at"]}
        rel = {"space": {"data": {"guid": si["space"]}}}
        links = {"self": {"href": f"{self.url}/v3/service_instances/{si['guid']}"},
                 "space": {"href": f"{self.url}/v3/spaces/{si['space']}"}}
        out = {"guid": si["guid"], "created_at": si["created_at"],
               "updated_at": si["created_at"], "name": si["name"], "tags": [],
               "type": si["type"], "relationships": rel,
               "metadata": {"labels": {}, "annotations": {}}, "links": links}
        if si["type"] == "managed":
            out.update({"maintenance_info": {}, "upgrade_available": False,
                        "dashboard_url": None, "last_operation": lo})
            rel["service_plan"] = {"data": {"guid": si["plan_guid"]}}
            links["service_plan"] = {"href": f"{self.url}/v3/service_plans/{si['plan_guid']}"}
        return out

    def _binding_json(self, b):
        return {"guid": b["guid"], "type": "key", "name": b["name"],
                "created_at": b["created_at"], "updated_at": b["created_at"],
                "last_operation": {"type": b["op"], "state": b["state"], "description": None,
                                   "created_at": b["created_at"],
                                   "updated_at": b["created_at"]},
                "metadata": {"labels": {}, "annotations": {}},
                "relationships": {"service_instance": {"data": {"guid": b["instance"]}}},
                "links": {"self": {"href": f"{self.url}/v3/service_credential_bindings/{b['guid']}"},
                          "details": {"href": f"{self.url}/v3/service_credential_bindings/{b['guid']}/details"},
                          "service_instance": {"href": f"{self.url}/v3/service_instances/{b['instance']}"}}}

    @staticmethod
    def _list_param(query, name):
        v = query.get(name)
        return None if v is None else [x for x in ",".join(v).split(",") if x != ""]

    @staticmethod
    def _fields(query):
        out = {}
        for k, v in query.items():
            if k.startswith("fields[") and k.endswith("]"):
                out[k[7:-1]] = ",".join(v).split(",")
        return out

    def handle(self, method, path, query, headers, body):
        """Returns (status, json body or None, extra headers)."""
        self.requests.append((method, path))
        for inj in self.injected:
            if inj[0] == method and path.startswith(inj[1]) and inj[3] > 0:
                inj[3] -= 1
                raise CCError(inj[2], 10001, "CF-ServiceUnavailable", "injected failure")
        if method == "GET" and path in ("", "/"):
            return 200, self._root(), {}
        if path == "/uaa/oauth/token" and method == "POST":
            return self._token(headers, body)
        if path == "/_double/state" and method == "GET":
            return 200, self.state(), {}
        if path == "/_double/expire_tokens" and method == "POST":
            self.tokens.clear()
            return 200, {}, {}
        if not path.startswith("/v3/"):
            raise CCError(404, 10000, "CF-NotFound", "Unknown request")
        self._check_token(headers)
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/v3/service_instances":
            return 200, self._list_instances(path, query), {}
        if method == "GET" and len(parts) == 3 and parts[1] == "service_plans":
            p = self.plans.get(parts[2]) or _raise(_not_found("Service plan"))
            return 200, {"guid": p["guid"], "name": p["name"], "relationships": {
                "service_offering": {"data": {"guid": p["offering_guid"]}}}}, {}
        if method == "GET" and len(parts) == 3 and parts[1] == "service_offerings":
            o = self.offerings.get(parts[2]) or _raise(_not_found("Service offering"))
            return 200, {"guid": o["guid"], "name": o["name"]}, {}
        if method == "GET" and path == "/v3/roles":
            return 200, self._list_roles(path, query), {}
        if path == "/v3/service_credential_bindings":
            if method == "POST":
                return self._create_binding(body)
            if method == "GET":
                return 200, self._list_bindings(path, query), {}
        if len(parts) >= 3 and parts[1] == "service_credential_bindings":
            b = self.bindings.get(parts[2]) or _raise(_not_found("Service credential binding"))
            if method == "GET" and len(parts) == 3:
                return 200, self._binding_json(b), {}
            if method == "GET" and len(parts) == 4 and parts[3] == "details":
                if b["state"] != "succeeded":
                    raise _not_found("Service credential binding")
                creds = self.instances[b["instance"]]["credentials"]
                return 200, {"credentials": creds, "syslog_drain_url": None,
                             "volume_mounts": []}, {}
            if method == "DELETE" and len(parts) == 3:
                return self._delete_binding(b)
        if method == "GET" and len(parts) == 3 and parts[1] == "jobs":
            return 200, self._poll_job(parts[2]), {}
        raise CCError(404, 10000, "CF-NotFound", "Unknown request")

    def _root(self):
        return {"links": {
            "self": {"href": self.url},
            "bits_service": None,
            "cloud_controller_v2": None,
            "cloud_controller_v3": {"href": self.url + "/v3", "meta": {"version": "3.180.0"}},
            "network_policy_v0": None, "network_policy_v1": None,
            "login": {"href": self.url + "/login"},
            "uaa": {"href": self.url + "/uaa"},
            "credhub": None, "routing": None, "logging": None,
            "log_cache": None, "log_stream": None, "app_ssh": None}}

    def _token(self, headers, body):
        self.token_requests += 1
        auth = headers.get("Authorization", "")
        ok = False
        if auth.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                ok = (urllib.parse.unquote(user) == self.client_id
                      and urllib.parse.unquote(pw) == self.client_secret)
            except Exception:
                ok = False
        form = urllib.parse.parse_qs(body.decode() if body else "")
        if not ok:
            return 401, {"error": "unauthorized", "error_description": "Bad credentials"}, {}
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "grant_type must be client_credentials"}, {}
        tok = "dbl." + secrets.token_urlsafe(24)
        self.tokens[tok] = time.time() + self.expires_in
        return 200, {"access_token": tok, "token_type": "bearer",
                     "expires_in": self.expires_in,
                     "scope": "cloud_controller.read cloud_controller.write",
                     "jti": uuid.uuid4().hex}, {}

    def _list_instances(self, path, query):
        names = None if self.loose_name_filter else self._list_param(query, "names")
        spaces = self._list_param(query, "space_guids")
        typ = query.get("type", [None])[0]
        rows = [si for si in sorted(self.instances.values(), key=lambda s: s["created_at"])
                if (names is None or si["name"] in names)
                and (spaces is None or si["space"] in spaces)
                and (typ is None or si["type"] == typ)]
        resources = [self._instance_json(si) for si in rows]
        fields = self._fields(query)
        included = None
        if fields:
            included = {}
            plan_guids = [si["plan_guid"] for si in rows if si["plan_guid"]]
            if "service_plan" in fields:
                keys = fields["service_plan"]
                plans = []
                for g in dict.fromkeys(plan_guids):
                    p = self.plans[g]
                    o = {}
                    if "guid" in keys:
                        o["guid"] = p["guid"]
                    if "name" in keys:
                        o["name"] = p["name"]
                    if "relationships.service_offering" in keys:
                        o["relationships"] = {"service_offering": {
                            "data": {"guid": p["offering_guid"]}}}
                    plans.append(o)
                included["service_plans"] = plans
            if "service_plan.service_offering" in fields:
                keys = fields["service_plan.service_offering"]
                offs = []
                for g in dict.fromkeys(self.plans[p]["offering_guid"] for p in plan_guids):
                    o = self.offerings[g]
                    offs.append({k: o[k] for k in ("guid", "name") if k in keys})
                included["service_offerings"] = offs
        return self._paginate(path, query, resources, included)

    def _list_roles(self, path, query):
        types = self._list_param(query, "types")
        spaces = self._list_param(query, "space_guids")
        users = self._list_param(query, "user_guids")
        rows = [r for r in self.roles
                if (types is None or r["type"] in types)
                and (spaces is None or r["space"] in spaces)
                and (users is None or r["user"] in users)]
        resources = [{"guid": r["guid"], "created_at": _now_iso(), "updated_at": _now_iso(),
                      "type": r["type"],
                      "relationships": {"user": {"data": {"guid": r["user"]}},
                                        "organization": {"data": None},
                                        "space": {"data": {"guid": r["space"]}}},
                      "links": {"self": {"href": f"{self.url}/v3/roles/{r['guid']}"}}}
                     for r in rows]
        return self._paginate(path, query, resources)

    def _list_bindings(self, path, query):
        names = None if self.loose_name_filter else self._list_param(query, "names")
        insts = self._list_param(query, "service_instance_guids")
        typ = query.get("type", [None])[0]
        rows = [b for b in sorted(self.bindings.values(), key=lambda b: b["seq"])
                if (names is None or b["name"] in names)
                and (insts is None or b["instance"] in insts)
                and (typ is None or typ == "key")]
        return self._paginate(path, query, [self._binding_json(b) for b in rows])

    def _new_job(self, operation, on_complete):
        g = str(uuid.uuid4())
        self.jobs[g] = {"guid": g, "operation": operation, "polls": 0,
                        "created_at": _now_iso(), "on_complete": on_complete,
                        "state": "PROCESSING", "errors": []}
        return {"Location": f"{self.job_link_base or self.url}/v3/jobs/{g}"}

    def _poll_job(self, guid):
        j = self.jobs.get(guid) or _raise(_not_found("Job"))
        if j["state"] == "PROCESSING":
            j["polls"] += 1
            if j["polls"] >= self.job_polls:
                if self.fail_jobs and self.fail_job_operation in (None, j["operation"]):
                    j["state"] = "FAILED"
                    j["errors"] = [{"code": 10009, "title": "CF-UnableToPerform",
                                    "detail": self.fail_jobs}]
                    j["on_complete"](False)
                else:
                    j["state"] = "COMPLETE"
                    j["on_complete"](True)
            else:
                # CC reports POLLING while it asks the broker's last_operation
                j["state_shown"] = "POLLING" if j["polls"] > 1 else "PROCESSING"
        state = j["state"] if j["state"] != "PROCESSING" else j.get("state_shown", "PROCESSING")
        return {"guid": j["guid"], "created_at": j["created_at"], "updated_at": _now_iso(),
                "operation": j["operation"], "state": state, "errors": j["errors"],
                "warnings": [], "links": {"self": {"href": f"{self.url}/v3/jobs/{guid}"}}}

    def _create_binding(self, body):
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise CCError(400, 1001, "CF-MessageParseError", "Request invalid due to parse error")
        typ = req.get("type")
        name = req.get("name")
        sig = (((req.get("relationships") or {}).get("service_instance") or {})
               .get("data") or {}).get("guid")
        if typ not in ("key", "app"):
            raise _unprocessable("Type must be one of 'app', 'key'")
        if typ != "key":
            raise _unprocessable("dsd's double only supports type key")
        if not name:
            raise _unprocessable("Name can't be blank")
        si = self.instances.get(sig)
        if si is None:
            raise _unprocessable(f"The service instance could not be found: '{sig}'.")
        if si["type"] != "managed":
            raise _unprocessable("Service credential bindings of type 'key' are not supported "
                                 "for user-provided service instances.")
        if si["in_progress"]:
            raise _unprocessable("There is an operation in progress for the service instance.")
        for b in self.bindings.values():
            if b["instance"] == sig and b["name"] == name:
                raise _unprocessable(f"The binding name is invalid. Key binding names must be "
                                     f"unique. The service instance already has a key binding "
                                     f"with name '{name}'.")
        g = str(uuid.uuid4())
        b = {"guid": g, "name": name, "instance": sig, "created_at": _now_iso(),
             "op": "create", "state": "in progress", "seq": len(self.requests)}
        self.bindings[g] = b

        def done(ok):
            if ok:
                b["state"] = "succeeded"
            else:
                b["state"] = "failed"
        return 202, None, self._new_job("service_bindings.create", done)

    def _delete_binding(self, b):
        b["op"], b["state"] = "delete", "in progress"

        def done(ok):
            if ok:
                self.bindings.pop(b["guid"], None)
            else:
                b["state"] = "failed"
        return 202, None, self._new_job("service_bindings.delete", done)


def _raise(e):
    raise e


class _Handler(BaseHTTPRequestHandler):
    double = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests print what matters
        pass

    def _serve(self, method):
        d = self.double
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        extra = {}
        try:
            with d.lock:
                status, payload, extra = d.handle(method, parsed.path, query, self.headers, body)
        except CCError as e:
            status, payload = e.status, e.body()
        data = b"" if payload is None or status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PATCH(self):
        self._serve("PATCH")


def start_cc_double(port=0, tls_cert=None, tls_key=None, **kwargs):
    """Starts a double on a free loopback port (stopped by .stop())."""
    return CCDouble(**kwargs).start(port, tls_cert=tls_cert, tls_key=tls_key)


def _from_seed(seed):
    d = CCDouble(client_id=seed.get("client_id", "dsd-broker"),
                 client_secret=seed.get("client_secret"),
                 expires_in=seed.get("expires_in", 3600),
                 job_polls=seed.get("job_polls", 2))
    for s in seed.get("spaces", []):
        d.add_space(s)
    for i in seed.get("instances", []):
        d.add_instance(i["name"], i["space"], offering=i.get("offering", "postgresql-db"),
                       plan=i.get("plan", "small"), credentials=i.get("credentials"),
                       in_progress=i.get("in_progress", False), type=i.get("type", "managed"),
                       guid=i.get("guid"))
    for r in seed.get("roles", []):
        d.add_user_role(r["user"], r["space"], r.get("type", "space_developer"))
    return d


def main():
    ap = argparse.ArgumentParser(description="Cloud Controller v3 + UAA test double")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", help="JSON file with spaces, instances, roles")
    args = ap.parse_args()
    seed = {}
    if args.seed:
        with open(args.seed) as f:
            seed = json.load(f)
    d = _from_seed(seed).start(args.port)
    print(json.dumps({"url": d.url, "client_id": d.client_id,
                      "client_secret": d.client_secret}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        d.stop()


if __name__ == "__main__":
    main()
