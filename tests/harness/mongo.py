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


def use(uri):
    """Points this module (and test_mongo_tool) at uri, e.g. a MongoDouble."""
    global URI
    URI = uri


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


def _tool(*args, check=True, stdin=None):
    env = dict(os.environ, DSD_MONGO_TOOL_URI=URI)
    p = subprocess.run([TOOL, *args], env=env, stdout=subprocess.PIPE, input=stdin,
                       stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"test_mongo_tool {args[0]} {args[1]}: {p.stderr.strip()}")
    return p


def command(db, cmd):
    """Runs cmd (a dict; extended JSON allowed) on db; returns the reply."""
    return json.loads(_tool("command", db, "-", stdin=json.dumps(cmd)).stdout)


def try_command(db, cmd):
    """As command(); None when the server refuses it."""
    p = _tool("command", db, "-", stdin=json.dumps(cmd), check=False)
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


# ---------------------------------------------------------------------------
# A MongoDB wire-protocol double
#
# No MongoDB server can run on the CI machines, so the code of dsd that talks
# to one (dialects/mongo/mongo.c, through libmongoc) is exercised against this
# double: a small in-memory server speaking OP_QUERY (the first handshake) and
# OP_MSG (everything after), written from the published protocol documents
# (MongoDB Wire Protocol; the hello, listDatabases, listCollections,
# listIndexes, find, getMore, killCursors, create, drop, insert,
# createIndexes, dropDatabase command references). It stores documents as
# the raw BSON it received and gives them back byte for byte, keeps
# collection options and index specs, and answers a replica-set hello when
# asked to (for the snapshot-session path: finds then carry readConcern
# level snapshot, which the double records). It implements no query
# language (find returns every document), no authentication, no TLS.
# It is NOT MongoDB: passing against it says that dsd's libmongoc calls are
# well formed and read their replies right, not that a server agrees.
# ---------------------------------------------------------------------------

import socket as _socket
import socketserver as _socketserver
import struct as _struct
import threading as _threading
import time as _time
import uuid as _uuid


class Int64(int):
    """An int that encodes as BSON int64."""


class RawValue:
    """A BSON value kept as its type code and bytes (re-encoded as is)."""

    def __init__(self, code, data):
        self.code, self.data = code, data

    def __eq__(self, other):
        return isinstance(other, RawValue) and (self.code, self.data) == (other.code, other.data)

    def __repr__(self):
        return f"RawValue({self.code}, {self.data!r})"


class RawDoc(bytes):
    """An embedded document kept as raw BSON bytes."""


def _cstring(data, pos):
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8", "surrogateescape"), end + 1


def bson_decode(data, pos=0, as_list=False):
    """Decodes the document at data[pos:]; returns (dict or list, end)."""
    (length,) = _struct.unpack_from("<i", data, pos)
    end = pos + length
    pos += 4
    out = []
    while pos < end - 1:
        code = data[pos]
        name, pos = _cstring(data, pos + 1)
        if code == 0x01:
            (v,) = _struct.unpack_from("<d", data, pos)
            pos += 8
        elif code == 0x02:
            (n,) = _struct.unpack_from("<i", data, pos)
            v = data[pos + 4:pos + 4 + n - 1].decode("utf-8", "surrogateescape")
            pos += 4 + n
        elif code in (0x03, 0x04):
            v, pos = bson_decode(data, pos, as_list=code == 0x04)
        elif code == 0x08:
            v = data[pos] != 0
            pos += 1
        elif code == 0x0A:
            v = None
        elif code == 0x10:
            (v,) = _struct.unpack_from("<i", data, pos)
            pos += 4
        elif code == 0x12:
            (v,) = _struct.unpack_from("<q", data, pos)
            v = Int64(v)
            pos += 8
        else:
            sizes = {0x05: None, 0x07: 12, 0x09: 8, 0x11: 8, 0x13: 16, 0x06: 0,
                     0xFF: 0, 0x7F: 0, 0x0B: None, 0x0D: None, 0x0E: None, 0x0F: None}
            if code == 0x05:
                (n,) = _struct.unpack_from("<i", data, pos)
                size = 4 + 1 + n
            elif code == 0x0B:
                _, p2 = _cstring(data, pos)
                _, p2 = _cstring(data, p2)
                size = p2 - pos
            elif code in (0x0D, 0x0E):
                (n,) = _struct.unpack_from("<i", data, pos)
                size = 4 + n
            elif code == 0x0F:
                (n,) = _struct.unpack_from("<i", data, pos)
                size = n
            elif code in sizes and sizes[code] is not None:
                size = sizes[code]
            else:
                raise ValueError(f"bson type {code:#x} not handled by the double")
            v = RawValue(code, data[pos:pos + size])
            pos += size
        out.append((name, v))
    if as_list:
        return [v for _, v in out], end
    return dict(out), end


def _enc_value(v):
    if isinstance(v, RawValue):
        return v.code, v.data
    if isinstance(v, RawDoc):
        return 0x03, bytes(v)
    if isinstance(v, bool):
        return 0x08, b"\x01" if v else b"\x00"
    if v is None:
        return 0x0A, b""
    if isinstance(v, Int64) or (isinstance(v, int) and not -2**31 <= v < 2**31):
        return 0x12, _struct.pack("<q", v)
    if isinstance(v, int):
        return 0x10, _struct.pack("<i", v)
    if isinstance(v, float):
        return 0x01, _struct.pack("<d", v)
    if isinstance(v, str):
        b = v.encode("utf-8", "surrogateescape")
        return 0x02, _struct.pack("<i", len(b) + 1) + b + b"\x00"
    if isinstance(v, dict):
        return 0x03, bson_encode(v)
    if isinstance(v, (list, tuple)):
        return 0x04, bson_encode({str(i): x for i, x in enumerate(v)})
    if isinstance(v, _uuid.UUID):
        return 0x05, _struct.pack("<i", 16) + b"\x04" + v.bytes
    raise TypeError(f"cannot encode {type(v)}")


def bson_encode(doc):
    body = b""
    for k, v in doc.items():
        code, data = _enc_value(v)
        body += bytes([code]) + k.encode() + b"\x00" + data
    return _struct.pack("<i", len(body) + 5) + body + b"\x00"


class _Coll:
    def __init__(self, options, view=False):
        self.options = options  # dict, re-encodable
        self.view = view
        self.uuid = _uuid.uuid4()
        self.docs = []  # raw BSON bytes
        self.indexes = [] if view else [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]


class MongoDouble:
    """The double: start() listens on 127.0.0.1 and returns the URI."""

    def __init__(self, replset=False, batch=101, slow=0.0):
        self.replset = replset
        self.slow = slow  # seconds of delay per getMore (cancel tests)
        self.cluster_time = _struct.pack("<II", 42, 1700000000)
        self.batch = batch
        self.dbs = {}  # db -> {coll -> _Coll}
        self.cursors = {}
        self.next_cursor = 1000
        self.lock = _threading.Lock()
        self.log = []  # (command name, db, coll, readConcern level)
        self.port = None
        self.server = None

    # -- commands ----------------------------------------------------------
    def _hello(self):
        r = {"helloOk": True, "ismaster": True, "isWritablePrimary": True,
             "topologyVersion": {"processId": RawValue(0x07, b"\x01" * 12), "counter": Int64(0)},
             "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000,
             "maxWriteBatchSize": 100000,
             "localTime": RawValue(0x09, _struct.pack("<q", int(_time.time() * 1000))),
             "logicalSessionTimeoutMinutes": 30, "connectionId": 1,
             "minWireVersion": 0, "maxWireVersion": 17, "readOnly": False, "ok": 1.0}
        if self.replset:
            me = f"127.0.0.1:{self.port}"
            r.update({"setName": "rs0", "setVersion": 1, "hosts": [me], "me": me,
                      "primary": me, "secondary": False,
                      "electionId": RawValue(0x07, b"\x7f\xff\xff\xff" + b"\x00" * 8)})
        return r

    @staticmethod
    def _err(code, msg, name=""):
        return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}

    def _cursor(self, ns, docs, first, batch):
        docs = list(docs)
        head, rest = docs[:batch], docs[batch:]
        cid = 0
        if rest:
            cid = self.next_cursor
            self.next_cursor += 1
            self.cursors[cid] = (ns, rest)
        c = {"firstBatch" if first else "nextBatch": [RawDoc(d) if isinstance(d, bytes) else d
                                                       for d in head],
             "id": Int64(cid), "ns": ns}
        return {"cursor": c, "ok": 1.0}

    def _coll_info(self, name, c):
        info = {"name": name, "type": "view" if c.view else "collection",
                "options": c.options, "info": {"readOnly": c.view}}
        if not c.view:
            info["info"]["uuid"] = c.uuid
            info["idIndex"] = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        return info

    def command(self, cmd, seqs):
        name = next(iter(cmd))
        lname = name.lower()
        db = cmd.get("$db", "admin")
        rc = cmd.get("readConcern", {}) or {}
        with self.lock:
            coll = cmd[name] if isinstance(cmd[name], str) else None
            extra = {}
            if "atClusterTime" in rc:
                extra["atClusterTime"] = rc["atClusterTime"].data
            if lname == "insert":
                extra["n"] = len(seqs.get("documents") or cmd.get("documents", []))
                extra["ordered"] = cmd.get("ordered", True)
            self.log.append((name, db, coll, rc.get("level"), extra))
            colls = self.dbs.get(db, {})
            if lname in ("hello", "ismaster"):
                return self._hello()
            if lname in ("ping", "endsessions"):
                return {"ok": 1.0}
            if lname == "killcursors":
                for cid in cmd.get("cursors", []):
                    self.cursors.pop(int(cid), None)
                return {"cursorsKilled": cmd.get("cursors", []), "ok": 1.0}
            if lname == "buildinfo":
                return {"version": "6.0.99-double", "versionArray": [6, 0, 99, 0], "ok": 1.0}
            if lname == "listdatabases":
                return {"databases": [{"name": d, "sizeOnDisk": Int64(1), "empty": False}
                                      for d in sorted(["admin"] + list(self.dbs))],
                        "totalSize": Int64(1), "ok": 1.0}
            if lname == "listcollections":
                infos = [self._coll_info(n, c) for n, c in sorted(colls.items())]
                return self._cursor(f"{db}.$cmd.listCollections", infos, True, 1000)
            if lname == "listindexes":
                if coll not in colls:
                    return self._err(26, f"ns does not exist: {db}.{coll}", "NamespaceNotFound")
                return self._cursor(f"{db}.{coll}", colls[coll].indexes, True, 1000)
            if lname == "create":
                if coll in colls:
                    return self._err(48, f"Collection {db}.{coll} already exists.", "NamespaceExists")
                opts = {k: v for k, v in cmd.items()
                        if k not in ("create", "$db", "lsid", "$clusterTime", "writeConcern",
                                     "$readPreference", "txnNumber")}
                self.dbs.setdefault(db, {})[coll] = _Coll(opts, view="viewOn" in opts)
                return {"ok": 1.0}
            if lname == "drop":
                if coll not in colls:
                    return self._err(26, "ns not found", "NamespaceNotFound")
                del colls[coll]
                return {"ok": 1.0}
            if lname == "collstats":
                if coll not in colls or colls[coll].view:
                    return self._err(26, "ns not found", "NamespaceNotFound")
                docs = colls[coll].docs
                return {"ns": f"{db}.{coll}", "size": sum(len(d) for d in docs),
                        "count": len(docs), "ok": 1.0}
            if lname == "dropindexes":
                if coll not in colls:
                    return self._err(26, "ns not found", "NamespaceNotFound")
                keep = [ix for ix in colls[coll].indexes
                        if ix["name"] == "_id_" or (cmd["dropIndexes"] and
                                                   ix["name"] != cmd.get("index"))]
                colls[coll].indexes = keep
                return {"ok": 1.0}
            if lname == "dropdatabase":
                self.dbs.pop(db, None)
                return {"ok": 1.0}
            if lname == "insert":
                docs = seqs.get("documents") or [bson_encode(d) for d in cmd.get("documents", [])]
                c = self.dbs.setdefault(db, {}).setdefault(coll, _Coll({}))
                c.docs.extend(docs)
                return {"n": len(docs), "ok": 1.0}
            if lname == "createindexes":
                if coll not in colls:
                    self.dbs.setdefault(db, {})[coll] = _Coll({})
                    colls = self.dbs[db]
                before = len(colls[coll].indexes)
                for spec in cmd["indexes"]:
                    if "ns" in spec:
                        return self._err(2, "ns is not allowed in an index spec", "BadValue")
                    colls[coll].indexes.append(spec)
                return {"numIndexesBefore": before, "numIndexesAfter": len(colls[coll].indexes),
                        "createdCollectionAutomatically": False, "ok": 1.0}
            if lname == "find":
                if coll not in colls:
                    return self._cursor(f"{db}.{coll}", [], True, 0)
                r = self._cursor(f"{db}.{coll}", colls[coll].docs, True,
                                 int(cmd.get("batchSize", self.batch)))
                if rc.get("level") == "snapshot" and "atClusterTime" not in rc:
                    # The first snapshot read: the server picks the time.
                    r["cursor"]["atClusterTime"] = RawValue(0x11, self.cluster_time)
                return r
            if lname == "getmore":
                if self.slow:
                    _time.sleep(self.slow)
                cid = int(cmd["getMore"])
                if cid not in self.cursors:
                    return self._err(43, f"cursor id {cid} not found", "CursorNotFound")
                ns, rest = self.cursors.pop(cid)
                return self._cursor(ns, rest, False, int(cmd.get("batchSize", self.batch)))
            return self._err(59, f"no such command: '{name}'", "CommandNotFound")

    # -- wire --------------------------------------------------------------
    def _handle(self, sock):
        def recv(n):
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf

        while True:
            try:
                header = recv(16)
            except (EOFError, OSError):
                return
            length, req_id, _, opcode = _struct.unpack("<iiii", header)
            body = recv(length - 16)
            if opcode == 2004:  # OP_QUERY: the first hello
                _, pos = _cstring(body, 4)
                query, _ = bson_decode(body, pos + 8)
                reply = bson_encode(self.command(query, {}))
                payload = _struct.pack("<iqii", 8, 0, 0, 1) + reply
                sock.sendall(_struct.pack("<iiii", 16 + len(payload), 0, req_id, 1) + payload)
                continue
            if opcode != 2013:
                return
            (flags,) = _struct.unpack_from("<I", body, 0)
            end = len(body) - (4 if flags & 1 else 0)
            pos, cmd, seqs = 4, None, {}
            while pos < end:
                kind = body[pos]
                pos += 1
                if kind == 0:
                    cmd, pos = bson_decode(body, pos)
                else:
                    (size,) = _struct.unpack_from("<i", body, pos)
                    stop = pos + size
                    ident, p = _cstring(body, pos + 4)
                    docs = []
                    while p < stop:
                        (n,) = _struct.unpack_from("<i", body, p)
                        docs.append(body[p:p + n])
                        p += n
                    seqs[ident] = docs
                    pos = stop
            try:
                reply = self.command(cmd, seqs)
            except Exception as e:  # a bug of the double: say so to the client
                reply = self._err(1, f"double: {type(e).__name__}: {e}", "InternalError")
            if self.replset:
                reply["operationTime"] = RawValue(0x11, _struct.pack("<II", 1, 1))
            payload = _struct.pack("<I", 0) + b"\x00" + bson_encode(reply)
            sock.sendall(_struct.pack("<iiii", 16 + len(payload), 0, req_id, 2013) + payload)

    def start(self):
        double = self

        class Handler(_socketserver.BaseRequestHandler):
            def handle(self):
                self.request.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                double._handle(self.request)

        class Server(_socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        _threading.Thread(target=self.server.serve_forever, daemon=True).start()
        common.on_exit(self.stop)
        q = "?replicaSet=rs0" if self.replset else "?directConnection=true"
        return f"mongodb://127.0.0.1:{self.port}/{q}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
