"""A throwaway MariaDB server for integration tests and benchmarks.

start_mariadb() runs mariadb-install-db (or mysql_install_db) into a
temporary directory and starts mariadbd on 127.0.0.1 on a free port, with
its unix socket, pid file and logs in that directory (never the system's
/run/mysqld), real grants (root gets a random password; tests create
ordinary users with create_user), no binary log and a small InnoDB buffer
pool because the data is thrown away. The server is stopped and the
directory removed when the test process ends.

mariadbd refuses to run as root unless told to: when the tests run as root,
the server runs as the `mysql` system user (--user=mysql) and the directory
is chowned to it. Clients (mariadb, mariadb-dump, dsd) run as the caller and
get the password through MYSQL_PWD, never argv.

    from mysql import start_mariadb
    my = start_mariadb()
    my["createdb"]("src")
    my["sql"]("src", "CREATE TABLE t (a int)")
    uri = my["uri"]("src")        # mysql://root:PW@127.0.0.1:PORT/src
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


def _which(*names):
    for n in names:
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            p = os.path.join(d, n)
            if os.path.exists(p):
                return p
        p = shutil.which(n)
        if p:
            return p
    return None


def find_binaries():
    """(server, install_db, client, dump) paths, or None when MariaDB is not
    installed."""
    server = _which("mariadbd", "mysqld")
    install = _which("mariadb-install-db", "mysql_install_db")
    client = _which("mariadb", "mysql")
    dump = _which("mariadb-dump", "mysqldump")
    if not (server and install and client):
        return None
    return server, install, client, dump


def _server_user():
    if not common.is_root():
        return None
    for name in ("mysql", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no mysql or nobody user to run the server as")


def _chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


def quote_ident(s):
    return "`" + s.replace("`", "``") + "`"


def quote_lit(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def make_tls(base):
    """A CA and a server certificate for 127.0.0.1 (CN and IP SAN) made with
    the openssl command; returns (ca, cert, key) paths."""
    ca_key, ca = os.path.join(base, "ca-key.pem"), os.path.join(base, "ca.pem")
    key, csr, cert = (os.path.join(base, n) for n in ("server-key.pem", "server.csr",
                                                       "server-cert.pem"))
    ext = os.path.join(base, "san.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName = IP:127.0.0.1\n")

    def run(*a):
        subprocess.run(["openssl", *a], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dsd test ca",
        "-keyout", ca_key, "-out", ca)
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
        "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)
    return ca, cert, key


def start_mariadb(quiet=True, extra_args=None, tls=False):
    """Starts a server; returns a dict:
      host, port, user, password, base, datadir, socket, client, dump
      uri(db, user=None, password=None)  connection URI (secret: has the password)
      env(password=None)                 environment with MYSQL_PWD for clients
      client_argv(db=None, user=None)    argv of the mariadb client (no password)
      sql(db, text, user=None, password=None, check=True) -> stdout (tab
                                         separated, no headers, raw values)
      createdb(name)
      create_user(name, password, db=None)  all privileges on db only
      run(argv, **kw)                    subprocess.run with env() set
      ca                                 with tls=True: the CA file of the
                                         server's certificate (for 127.0.0.1)
    Exits the test with SKIP when MariaDB is not installed."""
    bins = find_binaries()
    if bins is None:
        print("mysql: MariaDB server is not installed, skipping")
        raise SystemExit(SKIP)
    server, install, client, dump = bins
    base = common.tmpdir("dsd-my-")
    datadir = os.path.join(base, "data")
    sock = os.path.join(base, "mysqld.sock")
    os.mkdir(datadir)
    password = secrets.token_hex(16)

    tls_files = make_tls(base) if tls else None
    if tls_files:
        extra_args = list(extra_args or []) + [
            "--ssl-ca=" + tls_files[0], "--ssl-cert=" + tls_files[1], "--ssl-key=" + tls_files[2]]
    su = _server_user()
    if su is not None:
        os.chmod(base, 0o755)
        _chown_tree(base, su.pw_uid, su.pw_gid)
    user_args = ["--user=" + (su.pw_name if su is not None else pwd.getpwuid(os.getuid()).pw_name)]

    out = subprocess.run(
        [install, "--no-defaults", "--datadir=" + datadir, "--auth-root-authentication-method=normal",
         "--skip-test-db", "--skip-name-resolve"] + user_args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=base)
    if out.returncode != 0:
        raise RuntimeError("mariadb-install-db failed:\n" + out.stdout.decode(errors="replace"))

    # The server runs this file at start with full privileges: root gets
    # its random password over TCP (install-db leaves it with none).
    init = os.path.join(base, "init.sql")
    with open(init, "w") as f:
        f.write("CREATE USER IF NOT EXISTS root@'127.0.0.1';\n"
                "ALTER USER root@'127.0.0.1' IDENTIFIED BY %s;\n"
                "ALTER USER root@localhost IDENTIFIED BY %s;\n"
                "GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;\n"
                % (quote_lit(password), quote_lit(password)))
    os.chmod(init, 0o600)
    if su is not None:
        os.chown(init, su.pw_uid, su.pw_gid)
    port = common.free_port()
    log_path = os.path.join(base, "server.log")
    argv = [server, "--no-defaults", "--datadir=" + datadir, "--socket=" + sock,
            "--port=%d" % port, "--bind-address=127.0.0.1", "--skip-log-bin",
            "--skip-name-resolve", "--pid-file=" + os.path.join(base, "mysqld.pid"),
            "--log-error=" + log_path, "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M", "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=64M", "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci", "--init-file=" + init] + user_args + (extra_args or [])
    proc = common.start_process(argv, log_path=None, cwd=base)
    try:
        common.wait_port(port, timeout=60, proc=proc, what="mariadbd")
    except RuntimeError:
        if os.path.exists(log_path):
            with open(log_path, errors="replace") as f:
                print(f.read())
        raise
    host = "127.0.0.1"

    def env(pw=None):
        e = dict(os.environ)
        e["MYSQL_PWD"] = password if pw is None else pw
        e.pop("MYSQL_HOST", None)
        e.pop("MYSQL_TCP_PORT", None)
        return e

    def client_argv(db=None, user=None):
        a = [client, "--no-defaults", "--protocol=TCP", "-h", host, "-P", str(port),
             "-u", user or "root", "--default-character-set=utf8mb4"]
        if db:
            a.append(db)
        return a

    # Wait until the server answers queries (it listens a little before).
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run(client_argv(None) + ["-e", "SELECT 1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env())
        if r.returncode == 0:
            break
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("mariadbd does not answer: " + r.stderr.decode(errors="replace"))
        time.sleep(0.2)

    def sql(db, text, user=None, pw=None, check=True):
        r = subprocess.run(client_argv(db, user) + ["-N", "-B", "-r"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(pw))
        if check and r.returncode != 0:
            raise RuntimeError(f"mariadb on {db} failed: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode("utf-8", errors="surrogateescape")

    def uri(db, u=None, pw=None):
        u = u or "root"
        pw = password if pw is None else pw
        return "mysql://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(u, safe=""), urllib.parse.quote(pw, safe=""),
            host, port, urllib.parse.quote(db, safe=""))

    def createdb(name):
        sql(None, "CREATE DATABASE %s CHARACTER SET utf8mb4" % quote_ident(name))

    def create_user(name, pw, db=None):
        sql(None, "CREATE USER %s@'%%' IDENTIFIED BY %s" % (quote_lit(name), quote_lit(pw)))
        if db:
            sql(None, "GRANT ALL PRIVILEGES ON %s.* TO %s@'%%'" % (quote_ident(db), quote_lit(name)))

    def run(argv, **kw):
        kw.setdefault("env", env(kw.pop("password", None)))
        return subprocess.run(argv, **kw)

    if not quiet:
        print(f"mysql: MariaDB on 127.0.0.1:{port}, data in {datadir}")
    return dict(host=host, port=port, user="root", password=password, base=base,
                datadir=datadir, socket=sock, client=client, dump=dump, proc=proc,
                log=log_path, uri=uri, env=env, client_argv=client_argv, sql=sql,
                createdb=createdb, create_user=create_user, run=run,
                ca=tls_files[0] if tls_files else None,
                quote_ident=quote_ident, quote_lit=quote_lit)


def require_dsd():
    if not os.path.exists(common.DSD_BIN):
        print(f"dsd binary {common.DSD_BIN} not built, skipping")
        raise SystemExit(SKIP)


def dsd(args, env_extra=None, timeout=600):
    """Runs the dsd CLI; returns the CompletedProcess (text)."""
    e = dict(os.environ)
    e.update(env_extra or {})
    return subprocess.run([common.DSD_BIN] + args, env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def rechunk_archive(src, dst, chunk_size, interleave=3):
    """Rewrites the dsd archive src (.tar.zst) as dst with every stream cut
    into chunks of chunk_size bytes, the data streams' chunks interleaved
    `interleave` streams at a time (as concurrent table workers write
    them). Stream bytes and sha256 stay the same; summary chunk counts are
    updated. Returns dst."""
    import io
    import json
    import tarfile
    import tempfile

    raw = subprocess.run(["zstd", "-q", "-d", "-c", src], stdout=subprocess.PIPE,
                         check=True).stdout
    entries = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for ti in tf:
            entries.append((ti.name, tf.extractfile(ti).read()))
    manifest = dict(entries)["manifest.json"]
    summary = json.loads(dict(entries)["summary.json"])
    streams = {}
    for name, data in entries:
        if name in ("manifest.json", "summary.json"):
            continue
        stream = name.rsplit("/", 1)[0]
        streams.setdefault(stream, []).append((name, data))
    joined = {s: b"".join(d for _, d in sorted(parts)) for s, parts in streams.items()}

    def chunks(s):
        data = joined[s]
        n = max(1, -(-len(data) // chunk_size))
        return [(f"{s}/{i + 1:06d}", data[i * chunk_size:(i + 1) * chunk_size])
                for i in range(n)]

    order = []
    data_streams = [s for s in joined if s.startswith("mysql/data/")]
    for s in ("mysql/drop", "mysql/schema"):
        if s in joined:
            order += chunks(s)
    pending = [chunks(s) for s in data_streams]
    while pending:
        group, pending = pending[:interleave], pending[interleave:]
        while any(group):
            for g in group:
                if g:
                    order.append(g.pop(0))
    if "mysql/post" in joined:
        order += chunks("mysql/post")
    for s in joined:
        if s in summary["streams"]:
            summary["streams"][s]["chunks"] = len(chunks(s))

    with tempfile.NamedTemporaryFile(suffix=".tar", delete=False) as tmp:
        with tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tf:
            def add(name, data):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mtime = int(time.time())
                tf.addfile(ti, io.BytesIO(data))
            add("manifest.json", manifest)
            for name, data in order:
                add(name, data)
            add("summary.json", json.dumps(summary).encode())
        tmp_path = tmp.name
    subprocess.run(["zstd", "-q", "-f", "--rm", "-3", tmp_path, "-o", dst], check=True)
    return dst
