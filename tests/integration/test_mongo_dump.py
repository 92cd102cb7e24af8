"""dsd dump / verify / restore of the mongo dialect against a real MongoDB.

Needs DSD_TEST_MONGODB_URI (see tests/harness/mongo.py); without it the test
exits 77 and ctest reports it SKIPPED. It has never run on the CI machines,
which cannot install a MongoDB server.

Checks, on databases of its own (dropped at exit):
  - dump through the CLI (password only in the environment, never in dsd's
    output), `dsd verify`, the archive layout after extraction (metadata.json
    like mongodump's, .bson chunk directories that concatenate to the
    collection's documents, no data stream for a view), the snapshot flag of
    the manifest against the server's topology
  - restore with clean over a modified database gives back every document,
    index, collection option and view; restore without clean into an empty
    database too
  - the by-hand recipe with mongorestore, when mongorestore is installed
  - anonymization of nested fields and arrays of documents, with the unique
    index on the anonymized field rebuilt
  - cancel (SIGINT) of a dump leaves nothing in the store; cancel of a restore
    fails with a message saying so
"""

import base64
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import time

import common
import mongo
from common import check

DSD = common.DSD_BIN
NPEOPLE = 3000


def run(argv, env, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, text=True, **kw)


def person(i):
    return {
        "_id": i,
        "email": f"user{i}@corp.example",
        "name": f"Person {i}",
        "address": {"city": ["Lyon", "Paris", "Nantes"][i % 3], "zip": f"{69000 + i % 50}"},
        "items": [{"sku": f"SKU-{i}-{k}", "qty": k + 1} for k in range(i % 4)],
        "born": {"$date": {"$numberLong": str(315532800000 + i * 86400000)}},
        "score": {"$numberDecimal": f"{i}.25"},
        "tags": ["t%d" % (i % 7), "common"],
        "blob": {"$binary": {"base64": base64.b64encode(bytes([i % 256] * 5)).decode(),
                             "subType": "00"}},
        "pad": "p" * (i % 300),
    }


def fixture(db):
    mongo.command(db, {"create": "people", "validator": {"email": {"$type": "string"}}})
    mongo.insert(db, "people", [person(i) for i in range(NPEOPLE)])
    mongo.command(db, {"createIndexes": "people", "indexes": [
        {"key": {"email": 1}, "name": "email_1", "unique": True},
        {"key": {"address.city": 1, "born": -1}, "name": "city_born"},
        {"key": {"items.sku": 1}, "name": "sku_partial",
         "partialFilterExpression": {"items.sku": {"$exists": True}}},
        {"key": {"name": "text"}, "name": "name_text"},
    ]})
    mongo.command(db, {"create": "log", "capped": True, "size": 1048576})
    mongo.insert(db, "log", [{"_id": i, "line": f"event {i}"} for i in range(10)])
    mongo.command(db, {"create": "empty"})
    mongo.command(db, {"create": "adults", "viewOn": "people",
                       "pipeline": [{"$match": {"_id": {"$gte": 100}}}]})
    mongo.insert_generated(db, "bulk", 30000)


def bson_count(data):
    """Documents in a .bson file, walking the length prefixes."""
    n = pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<i", data, pos)
        check(length >= 5 and pos + length <= len(data), f"bad document at byte {pos}")
        pos += length
        n += 1
    return n


def extract(archive_path, into):
    subprocess.run(["tar", "--zstd", "-xf", archive_path, "-C", into], check=True)
    # The recipe of dialects/mongo/README.md: each <coll>.bson directory of
    # chunks becomes one <coll>.bson file.
    for d in sorted(glob.glob(os.path.join(into, "mongo", "*", "*.bson"))):
        with open(d + ".out", "wb") as out:
            for chunk in sorted(os.listdir(d)):
                with open(os.path.join(d, chunk), "rb") as f:
                    shutil.copyfileobj(f, out)
        shutil.rmtree(d)
        os.rename(d + ".out", d)


def main():
    mongo.require()
    src = mongo.db_name("src")
    mongo.cleanup_later(src)
    print(f"mongodb {mongo.server_version()}")
    mongo.drop_database(src)
    fixture(src)
    before = mongo.fingerprint(src)
    check(len(before["people"]["docs"]) == NPEOPLE, "fixture not loaded")

    store = common.tmpdir()
    archive = os.path.join(store, "m.tar.zst")
    url = "file://" + archive
    secret_uri = mongo.uri_for(src)
    env = dict(os.environ, DSD_SOURCE_URI=secret_uri, DSD_TARGET_URI=secret_uri)
    password = None
    if "@" in secret_uri.split("//", 1)[1]:
        cred = secret_uri.split("//", 1)[1].split("@", 1)[0]
        password = cred.split(":", 1)[1] if ":" in cred else None

    # ---- dump, verify, layout
    p = run([DSD, "dump", "--to", url, "--dialect", "mongo"], env)
    check(p.returncode == 0, f"dump failed: {p.stderr}")
    if password and len(password) >= 4:
        check(password not in p.stdout + p.stderr, "the password reached dsd's output")
    p = run([DSD, "verify", url], env)
    check(p.returncode == 0, f"verify failed: {p.stdout} {p.stderr}")

    x = common.tmpdir()
    extract(archive, x)
    base = os.path.join(x, "mongo", src)
    with open(os.path.join(x, "manifest.json")) as f:
        manifest = json.load(f)
    check(manifest["dialect"] == "mongo", "manifest dialect")
    hello = mongo.command("admin", {"hello": 1})
    wire = hello.get("maxWireVersion", 0)
    snap = bool(hello.get("setName") or hello.get("msg") == "isdbgrid") and wire >= 13
    check(manifest["mongo"]["snapshot"] == snap,
          f"snapshot {manifest['mongo']['snapshot']} on a server where it should be {snap}")
    with open(os.path.join(base, "people.metadata.json")) as f:
        meta = json.load(f)
    check(meta["collectionName"] == "people" and meta.get("type") == "collection", "metadata")
    check(list(meta.keys())[-2:] == ["collectionName", "type"], f"metadata keys {list(meta)}")
    check("validator" in meta["options"], "options lost")
    check({ix["name"] for ix in meta["indexes"]} >=
          {"_id_", "email_1", "city_born", "sku_partial", "name_text"}, "indexes lost")
    with open(os.path.join(base, "adults.metadata.json")) as f:
        vmeta = json.load(f)
    check(vmeta["type"] == "view" and vmeta["options"]["viewOn"] == "people"
          and vmeta["indexes"] == [], f"view metadata {vmeta}")
    check(not os.path.exists(os.path.join(base, "adults.bson")), "a view has a data stream")
    with open(os.path.join(base, "people.bson"), "rb") as f:
        check(bson_count(f.read()) == NPEOPLE, "people.bson does not hold every document")
    with open(os.path.join(base, "empty.bson"), "rb") as f:
        check(f.read() == b"", "empty.bson is not empty")

    # ---- restore with clean over a modified database
    mongo.command(src, {"drop": "people"})
    mongo.insert(src, "people", [{"_id": -1, "email": "stray@x"}])
    mongo.command(src, {"dropIndexes": "people", "index": "email_1"})
    mongo.command(src, {"drop": "adults"})
    mongo.command(src, {"drop": "log"})
    p = run([DSD, "restore", "--from", url], env)
    check(p.returncode == 0, f"restore failed: {p.stderr}")
    check(mongo.fingerprint(src) == before, "restore with clean did not give the dump back")

    # ---- restore without clean into an empty database
    mongo.drop_database(src)
    p = run([DSD, "restore", "--from", url, "--no-clean"], env)
    check(p.returncode == 0, f"restore --no-clean failed: {p.stderr}")
    check(mongo.fingerprint(src) == before, "restore into an empty database differs")

    # ---- the by-hand recipe
    mr = shutil.which("mongorestore")
    if mr:
        mongo.drop_database(src)
        cfg = os.path.join(store, "mr.yaml")
        with open(cfg, "w") as f:
            f.write(f"uri: {json.dumps(secret_uri)}\n")
        os.chmod(cfg, 0o600)
        p = run([mr, f"--config={cfg}", "--drop", "--dir", os.path.join(x, "mongo")], env)
        check(p.returncode == 0, f"mongorestore failed: {p.stderr}")
        check(mongo.fingerprint(src) == before, "the mongorestore recipe differs")
        os.unlink(cfg)
    else:
        print("mongorestore not installed: the by-hand recipe is not checked here")

    # ---- anonymization
    rules = os.path.join(store, "rules.json")
    with open(rules, "w") as f:
        json.dump({"tables": {f"{src}.people": {"email": "email", "address.city": "hash",
                                                "items.sku": "hash"}}}, f)
    aurl = "file://" + os.path.join(store, "anon.tar.zst")
    p = run([DSD, "dump", "--to", aurl, "--anonymize", rules, "--quiet"], env)
    check(p.returncode == 0, f"anonymized dump failed: {p.stderr}")
    p = run([DSD, "restore", "--from", aurl], env)
    check(p.returncode == 0, f"restore of the anonymized dump failed (unique email?): {p.stderr}")
    anon = mongo.find(src, "people")
    check(len(anon) == NPEOPLE, "anonymized document count")
    orig = before["people"]["docs"]
    for a, o in zip(anon, orig):
        check(a["_id"] == o["_id"] and a["name"] == o["name"], "kept fields changed")
        check(a["email"] != o["email"] and a["email"].endswith("@example.com"), "email kept")
        check(a["address"]["city"] != o["address"]["city"], "address.city kept")
        check(a["address"]["zip"] == o["address"]["zip"], "address.zip changed")
        check(len(a["items"]) == len(o["items"]), "items length changed")
        for ai, oi in zip(a["items"], o["items"]):
            check(ai["sku"] != oi["sku"] and ai["qty"] == oi["qty"], "items.sku kept")
    check("email_1" in mongo.indexes(src, "people"), "unique index not rebuilt")
    p = run([DSD, "restore", "--from", url], env)
    check(p.returncode == 0 and mongo.fingerprint(src) == before, "restore after anon")

    # ---- cancel
    curl = "file://" + os.path.join(store, "cancel.tar.zst")
    proc = subprocess.Popen([DSD, "dump", "--to", curl, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=120)
    if proc.returncode == 0:
        print("the dump finished before the signal: cancel not exercised")
    else:
        check(not os.path.exists(os.path.join(store, "cancel.tar.zst")),
              "a canceled dump left an archive")
        check("cancel" in (out + errs).lower(), f"cancel not reported: {errs}")
    proc = subprocess.Popen([DSD, "restore", "--from", url, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=120)
    if proc.returncode == 0:
        print("the restore finished before the signal: cancel not exercised")
    else:
        check("cancel" in (out + errs).lower(), f"restore cancel not reported: {errs}")
    print("ok")


if __name__ == "__main__":
    main()
