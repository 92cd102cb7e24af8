"""Shared pieces of the integration-test harness.

Every integration test starts the real servers it needs (PostgreSQL, MariaDB,
an S3 server, the dsd broker) on loopback, on free ports, in a temporary
directory, and stops them when it ends, so tests never touch a system
instance. Server-specific starters live in their own modules (s3.py, pg.py,
broker.py, ...); this module holds what they share.

Environment (set by ctest, see tests/CMakeLists.txt):
  DSD_BIN         the built dsd binary
  DSD_BUILD_DIR   the build directory
  DSD_SOURCE_DIR  the source tree
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77  # ctest SKIP_RETURN_CODE

DSD_BIN = os.environ.get("DSD_BIN", os.path.join(os.getcwd(), "build", "dsd"))
SOURCE_DIR = os.environ.get(
    "DSD_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("DSD_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))

_cleanups = []


def on_exit(fn):
    """Registers fn to run when the test process ends (last registered first)."""
    _cleanups.append(fn)


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # a failing cleanup must not hide the others
            print(f"harness: cleanup failed: {e}", file=sys.stderr)


atexit.register(_run_cleanups)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *_: sys.exit(1))


def tmpdir(prefix="dsd-test-"):
    """A fresh temporary directory, removed at exit unless DSD_KEEP_TMP is set."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("DSD_KEEP_TMP"):
        on_exit(lambda: shutil.rmtree(d, ignore_errors=True))
    else:
        print(f"harness: keeping {d}", file=sys.stderr)
    return d


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0, proc=None, what="server"):
    """Waits until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


def start_process(argv, env=None, log_path=None, cwd=None, user=None):
    """Starts a background process whose output goes to log_path; it is
    terminated (then killed) at exit. Returns the Popen."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    kwargs = {}
    if user is not None:
        kwargs["user"] = user
    p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                         cwd=cwd, start_new_session=True, **kwargs)

    def stop():
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if log_path:
            out.close()
    on_exit(stop)
    return p


def is_root():
    return os.geteuid() == 0


def check(cond, msg):
    """Fails the test with msg (an AssertionError) unless cond holds."""
    if not cond:
        raise AssertionError(msg)
