"""S3 servers for the integration tests, started on loopback.

  start_s3rver(bucket="dsd")  @20minutes/s3rver 4.0.4: files on disk, checks
                              SigV4 signatures (header and query auth).
  start_fauxqs(bucket="dsd")  fauxqs 1.9.2 (S3 part only): in memory,
                              implements AbortMultipartUpload, enforces the
                              5 MiB minimum part size; fauxqs.js adds
                              ListMultipartUploads. No signature checks.
  start_tls_proxy(server)     an https:// front for either (self-signed
                              certificate made with the openssl CLI); the
                              result also has "ca_file".

Both return dict(endpoint, bucket, access_key, secret_key, directory,
name) and are stopped when the test process exits. env_for(server) gives
the AWS_* environment the dsd code reads; s3tool(...) runs the test-only
CLI dsd_s3tool (tests/unit/s3tool.c) built next to dsd.

The Node packages are pinned in package.json / package-lock.json beside
this file; npm_install() runs `npm ci` when node_modules is missing.
"""

import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading

import common

HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.path.join(HARNESS_DIR, "node_modules")


def _node():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        print("harness: node is not installed; skipping", file=sys.stderr)
        sys.exit(common.SKIP)
    return node


def _node_modules_ok():
    return all(os.path.isfile(os.path.join(NODE_MODULES, *p.split("/"),
                                           "package.json"))
               for p in ("@20minutes/s3rver", "fauxqs"))


def npm_install():
    """Installs the pinned Node packages unless they are already there.
    Tests may run in parallel (ctest -j): a lock file makes one of them
    install while the others wait, since `npm ci` first deletes
    node_modules."""
    if _node_modules_ok():
        return
    npm = shutil.which("npm")
    if not npm:
        print("harness: npm is not installed; skipping", file=sys.stderr)
        sys.exit(common.SKIP)
    import fcntl
    import hashlib
    import tempfile
    tag = hashlib.sha256(HARNESS_DIR.encode()).hexdigest()[:12]
    lock_path = os.path.join(tempfile.gettempdir(), f"dsd-npm-{tag}.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _node_modules_ok():
            return
        lockfile = os.path.join(HARNESS_DIR, "package-lock.json")
        cmd = [npm, "ci" if os.path.exists(lockfile) else "install",
               "--no-audit", "--no-fund", "--loglevel=error"]
        r = subprocess.run(cmd, cwd=HARNESS_DIR, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("npm ci failed in tests/harness:\n" +
                               r.stdout.decode(errors="replace")[-4000:])


def _start(name, script, args, bucket, access_key, secret_key, directory,
           node_args=()):
    npm_install()
    port = common.free_port()
    log = os.path.join(directory, f"{name}.log")
    p = common.start_process([_node(), *node_args,
                              os.path.join(HARNESS_DIR, script),
                              str(port)] + args, log_path=log, cwd=HARNESS_DIR)
    try:
        common.wait_port(port, timeout=60, proc=p, what=name)
    except RuntimeError:
        with open(log, errors="replace") as f:
            sys.stderr.write(f.read()[-4000:])
        raise
    return {
        "name": name,
        "endpoint": f"http://127.0.0.1:{port}",
        "bucket": bucket,
        "access_key": access_key,
        "secret_key": secret_key,
        "directory": directory,
        "log": log,
        "process": p,
    }


def start_s3rver(bucket="dsd"):
    d = common.tmpdir("dsd-s3rver-")
    data = os.path.join(d, "data")
    os.makedirs(data)
    access_key = "DSDTESTACCESSKEY"
    secret_key = "dsd-test-secret-" + os.urandom(6).hex()
    # s3rver encrypts its ListObjectsV2 continuation tokens with DES, which
    # OpenSSL 3 only offers through its legacy provider: without this flag
    # every truncated listing fails with 500 InternalError.
    return _start("s3rver", "s3rver.js", [data, bucket, access_key, secret_key],
                  bucket, access_key, secret_key, d,
                  node_args=("--openssl-legacy-provider",))


def start_fauxqs(bucket="dsd"):
    d = common.tmpdir("dsd-fauxqs-")
    return _start("fauxqs", "fauxqs.js", [bucket], bucket,
                  "DSDTESTACCESSKEY", "dsd-fauxqs-secret-" + os.urandom(6).hex(),
                  d)


def _pump(tls, up):
    """Copies bytes both ways between a TLS socket and a plain one."""
    try:
        while True:
            ready = [tls] if tls.pending() else \
                select.select([tls, up], [], [], 120)[0]
            if not ready:
                return
            for s in ready:
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                (up if s is tls else tls).sendall(data)
    except OSError:
        return
    finally:
        for s in (tls, up):
            try:
                s.close()
            except OSError:
                pass


def start_tls_proxy(server):
    """Terminates TLS on a new loopback port and forwards to server."""
    d = common.tmpdir("dsd-tls-")
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    upstream = int(server["endpoint"].rsplit(":", 1)[1])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]

    def serve(conn):
        try:
            conn.settimeout(30)
            tls = ctx.wrap_socket(conn, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError):
            conn.close()  # e.g. a client that refused our certificate
            return
        _pump(tls, socket.create_connection(("127.0.0.1", upstream)))

    def accept_loop():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    common.on_exit(lsock.close)
    return dict(server, endpoint=f"https://127.0.0.1:{port}", ca_file=cert)


def env_for(server, **overrides):
    """The environment the dsd code reads to reach server."""
    env = dict(os.environ)
    for k in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "DSD_S3_LIST_PAGE_SIZE", "DSD_S3_READ_CHUNK", "DSD_S3_CA_FILE"):
        env.pop(k, None)
    env.update({
        "AWS_ACCESS_KEY_ID": server["access_key"],
        "AWS_SECRET_ACCESS_KEY": server["secret_key"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": server["endpoint"],
        # Keeps retry paths fast in tests.
        "DSD_S3_RETRY_BASE_MS": "20",
    })
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def s3tool_path():
    p = os.path.join(common.BUILD_DIR, "dsd_s3tool")
    if not os.path.exists(p):
        raise RuntimeError(f"{p} is missing: build the dsd_s3tool target")
    return p


def s3tool(server, *args, input=None, env=None, check=True, timeout=300):
    """Runs dsd_s3tool against server's bucket; returns CompletedProcess
    (stdout/stderr as bytes)."""
    url = f"s3://{server['bucket']}"
    argv = [s3tool_path()]
    if args and args[0] == "client":
        argv += [str(a) for a in args]
    elif args and str(args[0]).startswith(("s3://", "file://")):
        argv += [str(a) for a in args]
    else:
        argv += [url] + [str(a) for a in args]
    r = subprocess.run(argv, input=input, env=env or env_for(server),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[1:])} failed ({r.returncode}): "
            f"{r.stderr.decode(errors='replace')}")
    return r
