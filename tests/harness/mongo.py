"""MongoDB for the integration tests.

No MongoDB server can be installed on the CI machines, so unlike pg.py this
module does not start one: tests use the server named by
DSD_TEST_MONGODB_URI (mongodb:// or mongodb+srv://, a user allowed to
create and drop databases; a replica set exercises the snapshot path) and
exit with common.SKIP (77, "skipped" for ctest) when it is not set.

Python's standard library has no MongoDB driver: commands go through
build/tests/test_mongo_tool (tests/unit/test_mongo_tool.c, libmongoc), which
takes the URI from its environment, never from argv.

Every test works in databases named dsdtest_<pid>_<suffix>, dropped at exit.
"""

import json
import os
import subprocess
import sys
import urllib.parse

import common

URI = os.environ.get("DSD_TEST_MONGODB_URI", "")
TOOL = os.path.join(common.BUILD_DIR, "tests", "test_mongo_tool")


def require():
    """Exits with SKIP when no server is configured or the tool is missing."""
    if not URI:
        print("SKIP: DSD_TEST_MONGODB_URI is not set (no MongoDB server here)")
        sys.exit(common.SKIP)
    if not os.access(TOOL, os.X_OK):
        print(f"SKIP: {TOOL} is not built")
        sys.exit(common.SKIP)


def uri_for(db):
    """URI with db as its database; the credentials keep authenticating
    against the database the original URI named (or admin)."""
    parts = urllib.parse.urlsplit(URI)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    auth_db = parts.path.lstrip("/") or "admin"
    if "@" in parts.netloc and not any(k.lower() == "authsource" for k, _ in q):
        q.append(("authSource", auth_db))
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, "/" + db, urllib.parse.urlencode(q), ""))


def db_name(suffix):
    return f"dsdtest_{os.getpid()}_{suffix}"


def _tool(*args, check=True):
    env = dict(os.environ, DSD_MONGO_TOOL_URI=URI)
    p = subprocess.run([TOOL, *args], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"test_mongo_tool {args[0]} {args[1]}: {p.stderr.strip()}")
    return p


def command(db, cmd):
    """Runs cmd (a dict; extended JSON allowed) on db; returns the reply."""
    return json.loads(_tool("command", db, json.dumps(cmd)).stdout)


def try_command(db, cmd):
    """As command(); None when the server refuses it."""
    p = _tool("command", db, json.dumps(cmd), check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def find(db, coll):
    """Every document of db.coll as canonical extended JSON dicts, by _id."""
    out = _tool("find", db, coll).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def indexes(db, coll):
    """{name: (key as a list of pairs, other options)} of db.coll."""
    res = {}
    for line in _tool("indexes", db, coll).stdout.splitlines():
        ix = json.loads(line, object_pairs_hook=lambda p: p)
        d = dict(ix)
        key = [(k, v) for k, v in d["key"]]
        opts = {k: v for k, v in d.items() if k not in ("key", "name", "v", "ns")}
        res[d["name"]] = (key, json.dumps(opts, sort_keys=True))
    return res


def collections(db):
    """{name: (type, options as sorted JSON)} of db."""
    res = {}
    for line in _tool("collections", db).stdout.splitlines():
        c = json.loads(line)
        res[c["name"]] = (c.get("type", "collection"),
                          json.dumps(c.get("options", {}), sort_keys=True))
    return res


def insert_generated(db, coll, n):
    _tool("insert", db, coll, str(n))


def insert(db, coll, docs):
    for i in range(0, len(docs), 500):
        command(db, {"insert": coll, "documents": docs[i:i + 500], "ordered": True})


def drop_database(db):
    try_command(db, {"dropDatabase": 1})


def fingerprint(db):
    """Everything restore must bring back: collections with their types and
    options, every document, every index."""
    fp = {}
    for name, (typ, opts) in sorted(collections(db).items()):
        if name.startswith("system.") and name != "system.js":
            continue
        entry = {"type": typ, "options": opts}
        if typ != "view":
            entry["docs"] = find(db, name)
            entry["indexes"] = indexes(db, name)
        fp[name] = entry
    return fp


def server_version():
    return command("admin", {"buildInfo": 1}).get("version", "?")


def cleanup_later(*dbs):
    common.on_exit(lambda: [drop_database(d) for d in dbs])
