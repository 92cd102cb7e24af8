"""The Cloud Controller client (broker/cc.c) against the CC/UAA double.

Drives the library through the test-only dsd_cctool executable
(tests/unit/cctool.c) and checks both what it prints and what the double saw:
instance lookup (found, not found, operation in progress), the role check,
key creation with job polling, details, deletion (nothing left behind),
422 on an instance with an operation in progress, token refresh on 401
(exactly once), proactive refresh before expiry, a wrong client secret (clear
error, secret not printed), pagination, retries of a failing delete and a
failed CC job.
"""

import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
import uuid

import common
from ccdouble import start_cc_double

CCTOOL = os.path.join(common.BUILD_DIR, "dsd_cctool")

PG_CREDS = {"uri": "postgres://alice:pa%40ss@db.internal:5432/appdb",
            "hostname": "db.internal", "port": 5432, "name": "appdb",
            "username": "alice", "password": "pa@ss"}


class CCClientTest(unittest.TestCase):
    def setUp(self):
        self.cc = start_cc_double(job_polls=3)
        self.addCleanup(self.cc.stop)
        self.space = self.cc.add_space()
        self.pg = self.cc.add_instance("sourcedb", self.space, offering="csb-postgresql",
                                       plan="small", credentials=PG_CREDS)
        self.cc.add_instance("mydb", self.space, offering="p.mysql", plan="db-small",
                             credentials={"hostname": "m", "port": 3306, "name": "cf_1",
                                          "username": "u", "password": "p"})
        self.busy = self.cc.add_instance("busydb", self.space, offering="postgresql-db",
                                         in_progress=True)

    def run_tool(self, *steps, secret=None, env_extra=None):
        env = dict(os.environ)
        env.update({"DSD_CF_API": self.cc.url, "DSD_CF_CLIENT_ID": self.cc.client_id,
                    "DSD_CF_CLIENT_SECRET": secret or self.cc.client_secret,
                    "DSD_CCTOOL_POLL_MS": "10"})
        env.update(env_extra or {})
        argv = [CCTOOL]
        for i, s in enumerate(steps):
            if i:
                argv.append(";")
            argv.extend(s)
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def assert_ok(self, rc, out, err):
        self.assertEqual(rc, 0, f"dsd_cctool failed:\n{out}\n{err}")

    # ---- service instances and roles -----------------------------------

    def test_find_instance(self):
        rc, out, err = self.run_tool(["find", "sourcedb", self.space],
                                     ["find", "mydb", self.space])
        self.assert_ok(rc, out, err)
        lines = out.splitlines()
        self.assertIn(f"guid={self.pg}", lines[0])
        self.assertIn("type=managed state=succeeded plan=small offering=csb-postgresql "
                      "dialect=pg", lines[0])
        self.assertIn("dialect=mysql", lines[1])
        # the offering and plan names came from one request (fields[...])
        gets = [p for m, p in self.cc.requests if p.startswith("/v3/service_instances")]
        self.assertEqual(len(gets), 2)

    def test_find_not_found_and_other_space(self):
        rc, out, _ = self.run_tool(["find", "nope", self.space])
        self.assertEqual(rc, 1)
        self.assertIn('error ENOTFOUND: no service instance named "nope" in this space', out)
        other = self.cc.add_space()
        rc, out, _ = self.run_tool(["find", "sourcedb", other])
        self.assertEqual(rc, 1)
        self.assertIn("ENOTFOUND", out)

    def test_find_in_progress(self):
        rc, out, _ = self.run_tool(["find", "busydb", self.space])
        self.assertEqual(rc, 1)
        self.assertIn('error EBUSY: service instance "busydb" has an operation in progress', out)

    def test_role_check(self):
        dev, other = str(uuid.uuid4()), str(uuid.uuid4())
        self.cc.add_user_role(dev, self.space, "space_developer")
        self.cc.add_user_role(other, self.space, "space_auditor")
        rc, out, err = self.run_tool(["role", dev, self.space], ["role", other, self.space],
                                     ["role", dev, self.cc.add_space()])
        self.assert_ok(rc, out, err)
        self.assertEqual(out.splitlines(), ["ok role yes", "ok role no", "ok role no"])

    # ---- service keys --------------------------------------------------

    def test_key_lifecycle(self):
        rc, out, err = self.run_tool(["flow", "sourcedb", self.space, "dsd-op-1", "pg"])
        self.assert_ok(rc, out, err)
        self.assertIn("ok details uri=postgres://alice:pa%40ss@db.internal:5432/appdb", out)
        self.assertIn("ok delete", out)
        self.assertEqual(self.cc.live_keys(), 0)
        # both the create and the delete job were polled to completion
        polls = [p for m, p in self.cc.requests if p.startswith("/v3/jobs/")]
        self.assertGreaterEqual(len(polls), 2 * 3)
        self.assertTrue(all(j["state"] == "COMPLETE" for j in self.cc.jobs.values()))

    def test_concurrent_jobs_share_one_client(self):
        rc, out, err = self.run_tool(["par", "8", "sourcedb", self.space, "dsd-par", "pg"])
        self.assert_ok(rc, out, err)
        self.assertIn("ok par 8", out)
        self.assertEqual(out.count("ok details uri=postgres://alice:"), 8)
        self.assertEqual(self.cc.live_keys(), 0)
        self.assertEqual(self.cc.token_requests, 1)  # one token for all threads

    def test_acquire_uri(self):
        dev, auditor = str(uuid.uuid4()), str(uuid.uuid4())
        self.cc.add_user_role(dev, self.space, "space_developer")
        self.cc.add_user_role(auditor, self.space, "space_auditor")
        rc, out, err = self.run_tool(["acquire", "sourcedb", self.space, dev, "pg", "dsd-a1"])
        self.assert_ok(rc, out, err)
        self.assertIn("uri=postgres://alice:pa%40ss@db.internal:5432/appdb", out)
        self.assertEqual(self.cc.key_names(), ["dsd-a1"])  # the caller deletes it
        rc, out, err = self.run_tool(["delete", out.split()[2]])
        self.assert_ok(rc, out, err)
        # an auditor may not read the database through the broker: no key made
        rc, out, _ = self.run_tool(["acquire", "sourcedb", self.space, auditor, "pg", "dsd-a2"])
        self.assertEqual(rc, 1)
        self.assertIn("error EDENIED: only a space developer", out)
        # a mysql offering named as the source of a pg dump: refused before any key
        rc, out, _ = self.run_tool(["acquire", "mydb", self.space, "-", "pg", "dsd-a3"])
        self.assertEqual(rc, 1)
        self.assertIn("error EINVAL: the service instance is a mysql database but the plan "
                      "is pg", out)
        self.assertFalse([p for m, p in self.cc.requests
                          if m == "POST" and p == "/v3/service_credential_bindings"][1:])
        # an offering that does not say its kind: the credentials do; the key
        # made to read them is deleted again
        self.cc.add_instance("vague", self.space, offering="dbaas", plan="standard",
                             credentials={"uri": "mongodb://u:p@h:27017/x"})
        rc, out, _ = self.run_tool(["acquire", "vague", self.space, "-", "pg", "dsd-a4"])
        self.assertEqual(rc, 1)
        self.assertIn("is a mongo database but the plan is pg", out)
        self.assertEqual(self.cc.live_keys(), 0)
        # a failed create job: the half-made key is found by name and deleted
        self.cc.fail_jobs = "broker said no"
        self.cc.fail_job_operation = "service_bindings.create"
        rc, out, _ = self.run_tool(["acquire", "sourcedb", self.space, "-", "pg", "dsd-a5"])
        self.assertEqual(rc, 1)
        self.assertIn('creating service key "dsd-a5" failed: broker said no', out)
        self.assertEqual(self.cc.live_keys(), 0)
        # ... and when even the delete fails, the message says so
        self.cc.fail_job_operation = None
        rc, out, _ = self.run_tool(["acquire", "sourcedb", self.space, "-", "pg", "dsd-a6"])
        self.assertEqual(rc, 1)
        self.assertIn('service key "dsd-a6" could not be deleted', out)
        self.assertEqual(self.cc.key_names(), ["dsd-a6"])

    def test_key_steps_and_find_key(self):
        rc, out, err = self.run_tool(["create", self.pg, "dsd-op-2"])
        self.assert_ok(rc, out, err)
        key = out.split()[-1]
        self.assertEqual(self.cc.key_names(), ["dsd-op-2"])
        rc, out, err = self.run_tool(["findkey", self.pg, "dsd-op-2"],
                                     ["details", key, "pg"])
        self.assert_ok(rc, out, err)
        self.assertIn(f"ok findkey {key}", out)
        # the same credentials do not pass for a mysql plan
        rc, out, _ = self.run_tool(["details", key, "mysql"])
        self.assertEqual(rc, 1)
        self.assertIn("the service instance is a postgresql database but the plan is mysql", out)
        self.assertNotIn("pa@ss", out)
        self.assertNotIn("pa%40ss", out)
        # a second key with the same name is refused as a duplicate
        rc, out, _ = self.run_tool(["create", self.pg, "dsd-op-2"])
        self.assertEqual(rc, 1)
        self.assertIn("EEXIST", out)
        rc, out, err = self.run_tool(["delete", key], ["delete", key])
        self.assert_ok(rc, out, err)  # the second delete finds it gone: success
        self.assertEqual(self.cc.live_keys(), 0)
        rc, out, _ = self.run_tool(["findkey", self.pg, "dsd-op-2"])
        self.assertEqual(rc, 1)
        self.assertIn("ENOTFOUND", out)

    def test_create_key_operation_in_progress(self):
        rc, out, _ = self.run_tool(["create", self.busy, "dsd-op-3"])
        self.assertEqual(rc, 1)
        self.assertIn("error EBUSY:", out)
        self.assertIn("There is an operation in progress for the service instance", out)
        self.assertEqual(self.cc.live_keys(), 0)

    def test_token_not_sent_outside_the_api(self):
        # same server, other origin: the client must not follow the link
        self.cc.job_link_base = self.cc.url.replace("127.0.0.1", "localhost")
        rc, out, _ = self.run_tool(["create", self.pg, "dsd-op-6"])
        self.assertEqual(rc, 1)
        self.assertIn("error EPROTO: the cloud controller linked to http://localhost:", out)
        self.assertFalse([p for m, p in self.cc.requests if p.startswith("/v3/jobs/")])

    def test_failed_job(self):
        self.cc.fail_jobs = "Service broker failed to bind: database is read-only"
        rc, out, _ = self.run_tool(["create", self.pg, "dsd-op-4"])
        self.assertEqual(rc, 1)
        self.assertIn('creating service key "dsd-op-4" failed: Service broker failed to bind: '
                      "database is read-only", out)

    def test_lookups_follow_pagination(self):
        self.cc.per_page_default = 1
        rc, out, err = self.run_tool(["create", self.pg, "k1"], ["create", self.pg, "k2"],
                                     ["create", self.pg, "k3"])
        self.assert_ok(rc, out, err)
        keys = [l.split()[-1] for l in out.splitlines()]
        # with the names filter ignored, each lookup must walk the pages and
        # pick the resource whose name matches
        self.cc.loose_name_filter = True
        n0 = len(self.cc.requests)
        rc, out, err = self.run_tool(["findkey", self.pg, "k3"], ["findkey", self.pg, "k1"],
                                     ["find", "busydb", self.space])
        self.assertEqual(rc, 1)  # busydb is busy; it was found on the last page
        self.assertIn(f"ok findkey {keys[2]}", out)
        self.assertIn(f"ok findkey {keys[0]}", out)
        self.assertIn('"busydb" has an operation in progress', out)
        pages = [p for m, p in self.cc.requests[n0:]
                 if p in ("/v3/service_credential_bindings", "/v3/service_instances")]
        self.assertEqual(len(pages), 3 + 3 + 3)

    def test_delete_retries_server_errors(self):
        rc, out, err = self.run_tool(["create", self.pg, "dsd-op-5"])
        self.assert_ok(rc, out, err)
        key = out.split()[-1]
        self.cc.inject_failure("DELETE", "/v3/service_credential_bindings/", 502, 2)
        rc, out, err = self.run_tool(["delete", key])
        self.assert_ok(rc, out, err)
        self.assertIn("retrying", err)
        self.assertEqual(self.cc.live_keys(), 0)

    # ---- authentication ------------------------------------------------

    def test_token_is_cached(self):
        rc, out, err = self.run_tool(["find", "sourcedb", self.space],
                                     ["find", "mydb", self.space],
                                     ["role", str(uuid.uuid4()), self.space])
        self.assert_ok(rc, out, err)
        self.assertEqual(self.cc.token_requests, 1)
        self.assertEqual(self.cc.unauthorized, 0)

    def test_revoked_token_refreshed_once(self):
        # expire the tokens while the tool sleeps between two lookups
        t = threading.Timer(0.4, self.cc.expire_tokens)
        t.start()
        rc, out, err = self.run_tool(["find", "sourcedb", self.space], ["sleep", "1200"],
                                     ["find", "sourcedb", self.space])
        t.join()
        self.assert_ok(rc, out, err)
        self.assertEqual(self.cc.token_requests, 2)
        self.assertEqual(self.cc.unauthorized, 1)

    def test_rejected_fresh_token_fails_after_one_refresh(self):
        self.cc.reject_all_tokens = True
        rc, out, _ = self.run_tool(["find", "sourcedb", self.space])
        self.assertEqual(rc, 1)
        self.assertIn("error EAUTH: the cloud controller rejected a fresh uaa token", out)
        self.assertEqual(self.cc.token_requests, 2)
        self.assertEqual(self.cc.unauthorized, 2)

    def test_token_refreshed_before_expiry(self):
        self.cc.expires_in = 2
        rc, out, err = self.run_tool(["find", "sourcedb", self.space], ["sleep", "2300"],
                                     ["find", "sourcedb", self.space])
        self.assert_ok(rc, out, err)
        self.assertEqual(self.cc.token_requests, 2)
        self.assertEqual(self.cc.unauthorized, 0)  # refreshed before CC had to refuse it

    def test_wrong_client_secret(self):
        wrong = "wrong-" + self.cc.client_secret
        rc, out, err = self.run_tool(["find", "sourcedb", self.space], secret=wrong)
        self.assertEqual(rc, 1)
        self.assertIn(f'error EAUTH: the uaa at {self.cc.url}/uaa rejected client '
                      f'"{self.cc.client_id}" (Bad credentials)', out)
        self.assertIn("HINT: check DSD_CF_CLIENT_ID and DSD_CF_CLIENT_SECRET", out)
        self.assertNotIn(wrong, out + err)
        self.assertNotIn(self.cc.client_secret, out + err)
        # no CC call was made without a token
        self.assertFalse([p for m, p in self.cc.requests if p.startswith("/v3/")])

    def test_double_as_a_server_with_seed(self):
        # the way broker tests use the double: another process, seeded by file
        space, user = str(uuid.uuid4()), str(uuid.uuid4())
        seed = {"client_id": "broker-x", "client_secret": "seed-secret-123", "job_polls": 1,
                "spaces": [space],
                "instances": [{"name": "src", "space": space, "offering": "p.mysql",
                               "credentials": {"uri": "mysql://u:p@h:3306/d"}}],
                "roles": [{"user": user, "space": space}]}
        d = common.tmpdir()
        path = os.path.join(d, "seed.json")
        with open(path, "w") as f:
            json.dump(seed, f)
        port = common.free_port()
        here = os.path.dirname(os.path.abspath(common.__file__))
        p = common.start_process([sys.executable, os.path.join(here, "ccdouble.py"),
                                  "--port", str(port), "--seed", path],
                                 log_path=os.path.join(d, "double.log"))
        common.wait_port(port, proc=p, what="cc double")
        url = f"http://127.0.0.1:{port}"
        env = {"DSD_CF_API": url, "DSD_CF_CLIENT_ID": "broker-x",
               "DSD_CF_CLIENT_SECRET": "seed-secret-123"}
        rc, out, err = self.run_tool(["role", user, space],
                                     ["flow", "src", space, "k", "mysql"], env_extra=env)
        self.assert_ok(rc, out, err)
        self.assertIn("ok role yes", out)
        self.assertIn("ok details uri=mysql://u:p@h:3306/d", out)
        with urllib.request.urlopen(url + "/_double/state", timeout=10) as r:
            state = json.load(r)
        self.assertEqual(state["live_keys"], 0)
        self.assertEqual(state["token_requests"], 1)

    def test_tls_verified_unless_skipped(self):
        d = common.tmpdir()
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        tls = start_cc_double(tls_cert=cert, tls_key=key)
        self.addCleanup(tls.stop)
        space = tls.add_space()
        tls.add_instance("db", space)
        self.assertTrue(tls.url.startswith("https://"))
        env = {"DSD_CF_API": tls.url, "DSD_CF_CLIENT_ID": tls.client_id,
               "DSD_CF_CLIENT_SECRET": tls.client_secret}
        rc, out, _ = self.run_tool(["find", "db", space], env_extra=env)
        self.assertEqual(rc, 1)  # a self-signed certificate is refused by default
        self.assertIn("error ENET: cannot read the cloud controller's root document", out)
        self.assertEqual(tls.token_requests, 0)
        env["DSD_CF_SKIP_SSL_VALIDATION"] = "true"
        rc, out, err = self.run_tool(["find", "db", space], env_extra=env)
        self.assert_ok(rc, out, err)
        self.assertIn("tls certificate verification is off", err)
        self.assertEqual(tls.token_requests, 1)

    def test_unreachable_api(self):
        port = common.free_port()
        env = {"DSD_CF_API": f"http://127.0.0.1:{port}"}
        rc, out, _ = self.run_tool(["find", "sourcedb", self.space], env_extra=env)
        self.assertEqual(rc, 1)
        self.assertIn("error ENET: cannot read the cloud controller's root document", out)


if __name__ == "__main__":
    if not os.path.exists(CCTOOL):
        print(f"{CCTOOL} is not built", file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
