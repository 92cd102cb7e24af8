"""TLS options of mysql:// URIs against a real MariaDB with a certificate
for 127.0.0.1 made by a throwaway CA (tests/harness/mysql.py, tls=True).

- ssl-mode=REQUIRED works, and is refused by a server without TLS (the
  client library alone would go on in clear);
- ssl-mode=VERIFY_CA and VERIFY_IDENTITY with ssl-ca=<the CA> work;
- VERIFY_CA without the CA fails (the certificate is not trusted);
- the dumps made over TLS restore (over TLS too).
"""

import os
import urllib.parse

import common
import mysql as H
from common import check


def dump(my, uri_suffix, path):
    return H.dsd(["dump", "--quiet", "--to", "file://" + path],
                 {"DSD_SOURCE_URI": my["uri"]("src") + uri_suffix})


def main():
    H.require_dsd()
    work = common.tmpdir()
    my = H.start_mariadb(tls=True)
    my["createdb"]("src")
    my["sql"]("src", "CREATE TABLE t (id INT PRIMARY KEY, v VARBINARY(10)); "
                     "INSERT INTO t VALUES (1, 0x00ff), (2, NULL)")
    ca = urllib.parse.quote(my["ca"], safe="")
    for i, suffix in enumerate(("?ssl-mode=REQUIRED", f"?ssl-mode=VERIFY_CA&ssl-ca={ca}",
                                f"?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")):
        path = os.path.join(work, f"tls{i}.tar.zst")
        r = dump(my, suffix, path)
        check(r.returncode == 0, f"dump with {suffix.split('&')[0]} failed: {r.stderr}")
    r = dump(my, "?ssl-mode=VERIFY_CA", os.path.join(work, "untrusted.tar.zst"))
    check(r.returncode != 0, "VERIFY_CA trusted a certificate of an unknown CA")
    my["createdb"]("dst")
    r = H.dsd(["restore", "--quiet", "--from", "file://" + os.path.join(work, "tls1.tar.zst")],
              {"DSD_TARGET_URI": my["uri"]("dst") + f"?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"})
    check(r.returncode == 0, f"restore over TLS failed: {r.stderr}")
    check(my["sql"]("dst", "SELECT HEX(v) FROM t ORDER BY id").split() == ["00FF", "NULL"],
          "restored rows")
    print("TLS server: REQUIRED, VERIFY_CA, VERIFY_IDENTITY work; unknown CA refused")

    plain = H.start_mariadb()
    plain["createdb"]("src")
    r = dump(plain, "?ssl-mode=REQUIRED", os.path.join(work, "clear.tar.zst"))
    check(r.returncode != 0 and "does not offer TLS" in r.stderr,
          f"REQUIRED against a server without TLS: {r.returncode} {r.stderr[-300:]}")
    print("server without TLS: REQUIRED refused")


if __name__ == "__main__":
    main()
