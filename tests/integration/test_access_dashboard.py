"""The dashboard in a real browser: headless Chromium (Debian's `chromium`)
renders the page of a provisioned instance (status, dump summary, contents,
anonymized columns, operation history with logs, download link), of a
running dump (meta refresh, progress, cancel form) and of the canceled one;
screenshots go to the build directory (dashboard.png, dashboard-running.png).
The download link and the cancel form are then used as a browser would
(GET with the token; POST of the form, 303 back to the page). Wrong or
missing tokens get 403. Skipped (77) only when Chromium cannot be found or
installed, or PostgreSQL / the pg dialect are not available."""

import hashlib
import html.parser
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import common
from broker import start_broker
from pg import start_postgres
from test_access_api import Locker, http

check = common.check


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    if common.is_root() and shutil.which("apt-get"):
        r = subprocess.run(["apt-get", "install", "-y", "chromium"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=900)
        if r.returncode == 0:
            return shutil.which("chromium")
    return None


class Chromium:
    def __init__(self, path):
        self.path = path

    def _run(self, url, *extra):
        prof = common.tmpdir("dsd-chromium-")
        argv = [self.path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={prof}",
                *extra, url]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        check(r.returncode == 0, f"chromium failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
        return r.stdout.decode(errors="replace")

    def dom(self, url):
        return self._run(url, "--dump-dom")

    def screenshot(self, url, path):
        if os.path.exists(path):
            os.unlink(path)
        self._run(url, f"--screenshot={path}", "--window-size=1200,900",
                  "--hide-scrollbars")
        with open(path, "rb") as f:
            head = f.read(8)
        check(head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 10000,
              f"screenshot {path} is not a plausible PNG")


class Page(html.parser.HTMLParser):
    """The rendered DOM: text by element id, links, forms, meta refresh."""

    def __init__(self, text):
        super().__init__()
        self.by_id, self.links, self.forms, self.refresh = {}, {}, [], None
        self._open = []  # [id, depth, text parts]
        self._depth = 0
        self.text = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "input", "br", "link", "img"):
            self._depth += 1
            if "id" in a:
                self._open.append([a["id"], self._depth, []])
        if tag == "a" and "href" in a:
            self.links[a.get("id") or a["href"]] = a["href"]
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            self.refresh = a.get("content")
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"),
                               "fields": {}})
        if tag == "input" and self.forms:
            self.forms[-1]["fields"][a.get("name")] = a.get("value")

    def handle_endtag(self, tag):
        if tag in ("meta", "input", "br", "link", "img"):
            return
        while self._open and self._open[-1][1] == self._depth:
            i, _, parts = self._open.pop()
            self.by_id[i] = " ".join("".join(parts).split())
        self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        for o in self._open:
            o[2].append(data)

    def all_text(self):
        return " ".join("".join(self.text).split())


def main():
    chromium = find_chromium()
    if chromium is None:
        print("skipping: chromium is not installed and cannot be installed", file=sys.stderr)
        sys.exit(common.SKIP)
    ch = Chromium(chromium)
    pg = start_postgres()
    pg["createdb"]("src")
    pg["createdb"]("dst")
    pg["psql"]("src", "CREATE TABLE customers (id int PRIMARY KEY, email text, full_name text);"
                      "INSERT INTO customers SELECT g, 'u' || g || '@example.com', 'Name ' || g"
                      " FROM generate_series(1, 1500) g;"
                      "CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric);"
                      "INSERT INTO orders SELECT g, g % 1500 + 1, g * 2.5 FROM generate_series(1, 700) g;")
    b = start_broker()
    anon = {"tables": {"public.customers": {"email": "email", "full_name": "name"}}}
    st, body, _ = b.provision("dash-1", {"source_uri": pg["uri"]("src"), "anonymize": anon})
    check(st == 202, f"provision: {st} {body}")
    dash = body["dashboard_url"]
    token = urllib.parse.parse_qs(urllib.parse.urlparse(dash).query)["token"][0]
    st, res = b.wait_operation("dash-1", body["operation"], timeout=240)
    if res["state"] == "failed" and "not built yet" in res["description"]:
        print(f"skipping: {res['description']}", file=sys.stderr)
        sys.exit(common.SKIP)
    check(res["state"] == "succeeded", f"dump: {res}")
    st, t, _ = http("POST", f"{b.url}/v1/instances/dash-1/imports",
                    body={"target_uri": pg["uri"]("dst")}, bearer=token)
    check(st == 202, f"import: {st} {t}")
    st, res = b.wait_operation("dash-1", json.loads(t)["task_id"].split("~")[1], timeout=240)
    check(res["state"] == "succeeded", f"import: {res}")
    with open(os.path.join(b.storage_url[len("file://"):], "instances", "dash-1",
                           "instance.json")) as f:
        dump = json.load(f)["dump"]

    # ------------------------------------------------ the page of a ready dump
    page = Page(ch.dom(dash))
    check(page.by_id.get("status") == "ready", f"status: {page.by_id.get('status')}")
    check(page.refresh is None, "a finished instance's page must not refresh")
    streams = page.by_id.get("streams", "")
    check("customers" in streams and "orders" in streams, f"contents table: {streams!r}")
    check("1500" in streams and "700" in streams, f"row counts in the contents: {streams!r}")
    an = page.by_id.get("anonymized", "")
    check("public.customers" in an and "email" in an and "full_name" in an and "name" in an,
          f"anonymized columns: {an!r}")
    ops = page.by_id.get("operations", "")
    check("provision" in ops and "update" in ops and ops.count("succeeded") >= 2,
          f"operation history: {ops[:300]!r}")
    check("dumping the pg source" in ops and "importing" in ops, "operation logs on the page")
    text = page.all_text()
    check(dump["sha256"] in text, "the dump's sha256 is not shown")
    check("cancel" not in page.by_id, "a cancel button with nothing running")
    href = page.links.get("download")
    check(href == f"/dashboard/dash-1/download?token={token}", f"download link {href!r}")
    ch.screenshot(dash, os.path.join(common.BUILD_DIR, "dashboard.png"))

    # the download link as the browser follows it
    st, data, hdrs = http("GET", b.url + href)
    check(st == 200 and hashlib.sha256(data).hexdigest() == dump["sha256"],
          f"dashboard download: {st}")
    st, part, hdrs = http("GET", b.url + href, headers={"Range": "bytes=5-14"})
    check(st == 206 and part == data[5:15], f"dashboard download range: {st}")

    # tokens
    for url in (f"{b.url}/dashboard/dash-1", f"{b.url}/dashboard/dash-1?token={'0' * 64}",
                f"{b.url}/dashboard/dash-1?token={token}x", f"{b.url}/dashboard/nope?token={token}",
                f"{b.url}/dashboard/dash-1/download?token={'1' * 64}"):
        st, _, _ = http("GET", url)
        check(st == 403, f"{url}: {st}")
    st, _, hdrs = http("GET", dash)
    check(st == 200 and hdrs.get("Cache-Control") == "no-store" and
          hdrs.get("Referrer-Policy") == "no-referrer", "page headers")

    # ------------------------------------------------ a running dump, canceled
    lk = Locker(pg, "src", "orders")
    st, body, _ = b.provision("dash-2", {"source_uri": pg["uri"]("src")})
    check(st == 202, f"provision 2: {st}")
    dash2, op2 = body["dashboard_url"], body["operation"]
    token2 = urllib.parse.parse_qs(urllib.parse.urlparse(dash2).query)["token"][0]
    time.sleep(1)
    page = Page(ch.dom(dash2))
    check(page.by_id.get("status") == "dumping", f"running status: {page.by_id.get('status')}")
    check(page.refresh is not None and int(page.refresh) <= 10, f"refresh {page.refresh!r}")
    check("progress" in page.by_id or "<progress" in ch.dom(dash2), "no progress element")
    forms = [f for f in page.forms if f["action"] == "/dashboard/dash-2/cancel"]
    check(len(forms) == 1 and forms[0]["method"] == "post" and
          forms[0]["fields"].get("token") == token2 and forms[0]["fields"].get("operation") == op2,
          f"cancel form: {page.forms}")
    ch.screenshot(dash2, os.path.join(common.BUILD_DIR, "dashboard-running.png"))
    # a POST without the token is refused; with the form's fields it cancels
    st, _, _ = http("POST", b.url + forms[0]["action"], form={"operation": op2})
    check(st == 403, f"cancel without token: {st}")
    st, _, hdrs = http("POST", b.url + forms[0]["action"], form=forms[0]["fields"])
    check(st == 303 and hdrs.get("Location") == f"/dashboard/dash-2?token={token2}",
          f"cancel: {st} {hdrs.get('Location')}")
    lk.release()
    st, res = b.wait_operation("dash-2", op2, timeout=60)
    check(res["state"] == "failed" and "canceled on request" in res["description"], f"{res}")
    page = Page(ch.dom(dash2))
    check(page.by_id.get("status") == "failed" and page.refresh is None and
          "cancel" not in page.by_id and "download" not in page.links,
          f"canceled page: {page.by_id.get('status')} {page.refresh}")
    check("canceled on request" in page.by_id.get("operations", ""), "cancel not in history")

    check(b.stop() == 0, "broker exit status")
    log = b.log()
    for s in (token, token2, pg["password"]):
        check(s not in log, "a secret reached the broker log")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
