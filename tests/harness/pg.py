"""A throwaway PostgreSQL 15 cluster for integration tests and benchmarks.

start_postgres() runs initdb into a temporary directory and starts the
server on 127.0.0.1 on a free port, with its unix socket in that directory
(never the system's /var/run/postgresql), scram-sha-256 password auth for
every connection, and fsync off because the data is thrown away. The
superuser gets a random password. The server is stopped and the directory
removed when the test process ends.

PostgreSQL refuses to run as root: when the tests run as root, the server
runs as the `postgres` system user (or `nobody` when there is none) and the
directory is chowned to it. Clients (psql, pg_dump, dsd) run as the caller.

    from pg import start_postgres
    pg = start_postgres()
    pg["createdb"]("src")
    pg["psql"]("src", "CREATE TABLE t (a int)")
    uri = pg["uri"]("src")        # postgresql://postgres:PW@127.0.0.1:PORT/src
"""

import os
import pwd
import secrets
import shutil
import subprocess
import time
import urllib.parse

import common

SKIP = common.SKIP


def find_bindir():
    """The PostgreSQL 15 bin directory, or None when it is not installed."""
    for d in (os.environ.get("DSD_PG_BINDIR"), "/usr/lib/postgresql/15/bin"):
        if d and os.path.exists(os.path.join(d, "initdb")):
            return d
    return None


def _server_user():
    if not common.is_root():
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no postgres or nobody user to run the server as")


def _chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


def start_postgres(user="postgres", extra_conf=None, quiet=True):
    """Starts a cluster; returns a dict:
      host, port, user, password, bindir, datadir, sockdir,
      uri(db, user=None, password=None)  connection URI (secret: has the password)
      env(user=None, password=None)      environment for libpq clients
      psql(db, sql, user=None, password=None, check=True) -> stdout (-At output)
      createdb(name, owner=None)
      create_role(name, password, superuser=False)
      run(argv, **kw)                    subprocess.run with env() set
    Exits the test with SKIP when PostgreSQL is not installed."""
    bindir = find_bindir()
    if bindir is None:
        print("pg: PostgreSQL 15 is not installed, skipping")
        raise SystemExit(SKIP)
    base = common.tmpdir("dsd-pg-")
    datadir = os.path.join(base, "data")
    sockdir = os.path.join(base, "sock")
    os.mkdir(sockdir)
    password = secrets.token_hex(16)
    pwfile = os.path.join(base, "pw")
    with open(pwfile, "w") as f:
        f.write(password + "\n")
    os.chmod(pwfile, 0o600)

    su = _server_user()
    if su is not None:
        # mkdtemp gives 0700 to root; the server user must reach its files.
        os.chmod(base, 0o755)
        _chown_tree(base, su.pw_uid, su.pw_gid)
        os.chmod(sockdir, 0o777)
    run_as = su.pw_name if su is not None else None

    out = subprocess.run(
        [os.path.join(bindir, "initdb"), "-D", datadir, "-U", user,
         "--pwfile", pwfile, "--auth=scram-sha-256", "-E", "UTF8",
         "--locale=C", "--no-sync"],
        user=run_as, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=base)
    os.unlink(pwfile)
    if out.returncode != 0:
        raise RuntimeError("initdb failed:\n" + out.stdout.decode(errors="replace"))

    port = common.free_port()
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{sockdir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "128MB",
        "max_wal_size": "1GB",
        "log_min_messages": "warning",
    }
    conf.update(extra_conf or {})
    with open(os.path.join(datadir, "postgresql.conf"), "a") as f:
        for k, v in conf.items():
            f.write(f"{k} = {v}\n")

    log_path = os.path.join(base, "server.log")
    if su is not None:
        open(log_path, "a").close()
        os.chown(log_path, su.pw_uid, su.pw_gid)
    proc = common.start_process([os.path.join(bindir, "postgres"), "-D", datadir],
                                log_path=log_path, cwd=base, user=run_as)
    try:
        common.wait_port(port, timeout=60, proc=proc, what="postgres")
    except RuntimeError:
        with open(log_path, errors="replace") as f:
            print(f.read())
        raise
    # A postmaster accepts connections before it is ready; wait for a query.
    host = "127.0.0.1"

    def env(u=None, pw=None):
        e = dict(os.environ)
        e.update(PGHOST=host, PGPORT=str(port), PGUSER=u or user,
                 PGPASSWORD=pw if pw is not None else password,
                 PGCONNECT_TIMEOUT="10")
        e.pop("PGDATABASE", None)
        e.pop("PGSERVICE", None)
        return e

    def psql(db, sql, user=None, password=None, check=True):
        r = subprocess.run(
            [os.path.join(bindir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", db],
            input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env(user, password))
        if check and r.returncode != 0:
            raise RuntimeError(f"psql on {db} failed: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run([os.path.join(bindir, "psql"), "-X", "-At", "-d", "postgres",
                            "-c", "SELECT 1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env())
        if r.returncode == 0:
            break
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("postgres does not answer: " + r.stderr.decode(errors="replace"))
        time.sleep(0.1)

    def quote_ident(s):
        return '"' + s.replace('"', '""') + '"'

    def quote_lit(s):
        return "'" + s.replace("'", "''") + "'"

    def uri(db, u=None, pw=None):
        u = u or user
        pw = password if pw is None else pw
        return "postgresql://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(u, safe=""), urllib.parse.quote(pw, safe=""),
            host, port, urllib.parse.quote(db, safe=""))

    def createdb(name, owner=None):
        sql = "CREATE DATABASE " + quote_ident(name)
        if owner:
            sql += " OWNER " + quote_ident(owner)
        psql("postgres", sql)

    def create_role(name, pw, superuser=False):
        psql("postgres", "CREATE ROLE %s LOGIN %s PASSWORD %s" % (
            quote_ident(name), "SUPERUSER" if superuser else "NOSUPERUSER", quote_lit(pw)))

    def run(argv, **kw):
        kw.setdefault("env", env(kw.pop("user", None), kw.pop("password", None)))
        return subprocess.run(argv, **kw)

    if not quiet:
        print(f"pg: PostgreSQL on 127.0.0.1:{port}, data in {datadir}")
    return dict(host=host, port=port, user=user, password=password, bindir=bindir,
                datadir=datadir, sockdir=sockdir, base=base, proc=proc, log=log_path,
                uri=uri, env=env, psql=psql, createdb=createdb,
                create_role=create_role, run=run, quote_ident=quote_ident,
                quote_lit=quote_lit)


def pg_dump_schema(pg, db, user=None, password=None):
    """`pg_dump -s --no-owner --no-privileges` of db, without the \\restrict
    lines (their key is random per run) and the version comments, for
    comparing two databases' schemas."""
    r = pg["run"]([os.path.join(pg["bindir"], "pg_dump"), "-s", "--no-owner",
                   "--no-privileges", "-d", db], stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, user=user, password=password)
    if r.returncode != 0:
        raise RuntimeError("pg_dump -s failed: " + r.stderr.decode(errors="replace"))
    lines = [l for l in r.stdout.decode().splitlines()
             if not l.startswith("\\restrict") and not l.startswith("\\unrestrict")
             and not l.startswith("-- Dumped")]
    return "\n".join(lines) + "\n"


def db_fingerprint(pg, db, user=None, password=None):
    """A text that is equal for two databases with equal data: every user
    table's rows in order (COPY text of SELECT * ORDER BY all columns),
    every sequence's last_value and is_called, every large object's oid and
    md5, and materialized views' rows. Returns a dict name -> text."""
    psql = lambda sql: pg["psql"](db, sql, user=user, password=password)
    rels = psql("""
        SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'S', 'm', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 2""").splitlines()
    out = {}
    for line in rels:
        oid, name, kind = line.split("|")
        if kind == "S":
            out[name] = psql(f"SELECT last_value, is_called FROM {name}")
            continue
        if kind == "p":
            # a partitioned table's rows are its partitions' rows
            out[name] = psql(f"SELECT count(*) FROM {name}")
            continue
        # ONLY: an inheritance parent's rows without its children's. Rows
        # are compared by their text form, sorted bytewise, because some
        # types (json, point) have no ordering operator.
        only = "ONLY " if kind == "r" else ""
        out[name] = psql(
            f"SELECT count(*), md5(coalesce(string_agg(x, E'\\n' ORDER BY x COLLATE \"C\"), '')) "
            f"FROM (SELECT t::text AS x FROM {only}{name} t) s")
    out["<large objects>"] = psql(
        "SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid")
    return out


# ---------------------------------------------------------------------------
# A pg dump archive built by hand from the layout in dialects/pg/pg.h, with
# pg_dump and psql only. It lets the restore side be tested on its own (and
# on archives shaped in ways the real dump may never write: interleaved
# streams, tiny chunks, a corrupt summary), and documents the layout as the
# restore side reads it.
# ---------------------------------------------------------------------------

def _strip_restrict(text):
    return "".join(l for l in text.splitlines(keepends=True)
                   if not l.startswith("\\restrict") and not l.startswith("\\unrestrict"))


def pg_archive_streams(pg, db, keep_restrict=False, blob_piece=65536):
    """The pg streams of db as {stream name: bytes} in layout order, and the
    row count of each data stream."""
    bindir = pg["bindir"]

    def dump(*args):
        r = pg["run"]([os.path.join(bindir, "pg_dump"), "--no-owner", "--no-privileges",
                       *args, "-d", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError("pg_dump failed: " + r.stderr.decode(errors="replace"))
        t = r.stdout.decode()
        return t if keep_restrict else _strip_restrict(t)

    streams, rows = {}, {}
    clean = dump("--schema-only", "--clean", "--if-exists")
    cut = clean.find("\n-- Name: ")
    streams["pg/drop"] = (clean[:cut] if cut >= 0 else clean).encode()
    streams["pg/pre-data"] = dump("--section=pre-data").encode()
    psql = lambda sql: pg["psql"](db, sql)
    tables = psql("""
        SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2""").splitlines()
    for i, line in enumerate(tables, 1):
        oid, name = line.split("|", 1)
        cols = psql(f"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) "
                    f"FROM pg_attribute WHERE attrelid = {oid} AND attnum > 0 "
                    f"AND NOT attisdropped AND attgenerated = ''").strip()
        r = pg["run"]([os.path.join(bindir, "psql"), "-X", "-d", db, "-c",
                       f"COPY {name} ({cols}) TO STDOUT"], stdout=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError(f"COPY {name} failed")
        s = f"pg/data/{i:05d}"
        streams[s] = f"COPY {name} ({cols}) FROM stdin;\n".encode() + r.stdout + b"\\.\n"
        rows[s] = r.stdout.count(b"\n")
    blobs = []
    for oid in psql("SELECT oid FROM pg_largeobject_metadata ORDER BY oid").split():
        data = bytes.fromhex(psql(f"SELECT encode(lo_get({oid}), 'hex')").strip())
        for off in range(0, len(data), blob_piece):
            blobs.append(f"SELECT pg_catalog.lo_put('{oid}', {off}, "
                         f"'\\x{data[off:off + blob_piece].hex()}');\n")
    streams["pg/blobs"] = "".join(blobs).encode()
    seqs = []
    for name in psql("""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' ORDER BY 1""").splitlines():
        last, called = psql(f"SELECT last_value, is_called FROM {name}").strip().split("|")
        lit = "'" + name.replace("'", "''") + "'"
        seqs.append(f"SELECT pg_catalog.setval({lit}, {last}, {'true' if called == 't' else 'false'});\n")
    streams["pg/sequences"] = "".join(seqs).encode()
    streams["pg/post-data"] = dump("--section=post-data").encode()
    return streams, rows


def write_pg_archive(path, streams, rows, chunk_size=4 << 20, interleave=2,
                     manifest_extra=None, summary_edit=None, compress="zstd"):
    """Writes a dsd archive (tar, then zstd) of streams at path. Data streams
    are interleaved `interleave` at a time, chunk by chunk, as concurrent
    table workers write them. summary_edit(summary) may corrupt the summary."""
    import hashlib
    import io
    import json
    import tarfile

    ntables = sum(1 for s in streams if s.startswith("pg/data/"))
    manifest = {"format": "dsd-archive", "version": 1, "dialect": "pg",
                "pg": {"workers": interleave, "tables": ntables}}
    manifest.update(manifest_extra or {})

    def chunks(name):
        data = streams[name]
        n = max(1, -(-len(data) // chunk_size))
        return [(f"{name}/{i + 1:06d}", data[i * chunk_size:(i + 1) * chunk_size])
                for i in range(n)]

    order = []
    plain = [s for s in streams if not s.startswith("pg/data/")]
    data = [s for s in streams if s.startswith("pg/data/")]
    for s in plain[:2]:  # drop, pre-data
        order += chunks(s)
    pending = [chunks(s) for s in data]
    while pending:
        group, pending = pending[:interleave], pending[interleave:]
        while any(group):
            for g in group:
                if g:
                    order.append(g.pop(0))
    for s in plain[2:]:
        order += chunks(s)

    summary = {"format": "dsd-archive", "version": 1, "streams": {}}
    for s, d in streams.items():
        summary["streams"][s] = {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest(),
                                 "rows": rows.get(s, 0), "chunks": len(chunks(s))}
    summary["totals"] = {"rows": sum(rows.values()),
                         "bytes": sum(len(d) for d in streams.values()),
                         "streams": len(streams)}
    if summary_edit:
        summary_edit(summary)

    tar_path = path + ".tar-tmp"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = int(time.time())
            tf.addfile(ti, io.BytesIO(data))
        add("manifest.json", json.dumps(manifest).encode())
        for name, data in order:
            add(name, data)
        add("summary.json", json.dumps(summary).encode())
    if compress == "zstd":
        subprocess.run(["zstd", "-q", "-f", "--rm", "-3", tar_path, "-o", path], check=True)
    else:
        os.replace(tar_path, path)
    return path


def dsd(args, env=None, timeout=900):
    """Runs `$DSD_BIN args` with env added to the environment (connection
    URIs go there, DSD_SOURCE_URI / DSD_TARGET_URI, so that no password is
    in argv); returns the CompletedProcess with text stdout/stderr."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([common.DSD_BIN, *args], env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def require_dsd():
    """Skips the test when the dsd binary is missing."""
    if not os.path.exists(common.DSD_BIN):
        print(f"dsd binary {common.DSD_BIN} not built, skipping")
        raise SystemExit(SKIP)


def compare_databases(pg, src, dst, dst_user=None, dst_password=None):
    """Asserts that dst holds the same schema and data as src; returns
    nothing, raises AssertionError with the differences."""
    a = db_fingerprint(pg, src)
    b = db_fingerprint(pg, dst, user=dst_user, password=dst_password)
    diffs = [f"  {k}: source {a.get(k)!r} target {b.get(k)!r}"
             for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    common.check(not diffs, f"data of {dst} differs from {src}:\n" + "\n".join(diffs))
    sa = pg_dump_schema(pg, src)
    sb = pg_dump_schema(pg, dst, user=dst_user, password=dst_password)
    if sa != sb:
        import difflib
        d = "".join(list(difflib.unified_diff(sa.splitlines(True), sb.splitlines(True),
                                              src, dst))[:80])
        raise AssertionError(f"schema of {dst} differs from {src}:\n{d}")
