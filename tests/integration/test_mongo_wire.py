"""The mongo dialect's libmongoc code (dialects/mongo/mongo.c) driven through
the dsd CLI against the wire-protocol double of tests/harness/mongo.py.

No MongoDB server can run on the CI machines; test_mongo_dump.py covers a
real one when DSD_TEST_MONGODB_URI is set. This test always runs: it shows
that dsd's calls go over the wire well formed and that their replies are
read right (handshake, buildInfo, listDatabases, listCollections,
listIndexes, find/getMore, drop, create, unordered insert batches,
createIndexes, snapshot sessions), not that a MongoDB server would agree
with everything (the double implements no query language, no auth).

Checks:
  - dump of every database but admin/local/config (none named in the URI),
    `dsd verify`, the extracted layout (metadata.json, .bson chunks that
    concatenate to the stored documents byte for byte, no stream for a view)
  - restore with clean into the same server after changes, and into an
    empty server without clean: every collection, option, index, view and
    document (byte for byte) comes back; inserts are unordered batches of
    at most 1000 documents; indexes come after the documents
  - replica-set double: the first find reads with readConcern snapshot, the
    later ones at the cluster time the first one returned
  - anonymization of nested fields and arrays of documents; a one-database
    dump restored into the database the target URI names
  - cancel (SIGINT) of a slow dump leaves nothing in the store
  - a server that refuses authentication: a failed dump whose message and
    output hold no password
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import time

import common
import mongo
from common import check

DSD = common.DSD_BIN


def run(argv, env):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          text=True, timeout=300)


def fixture():
    mongo.command("shop", {"create": "people", "validator": {"email": {"$type": "string"}},
                           "collation": {"locale": "fr"}})
    docs = []
    for i in range(2500):
        docs.append({
            "_id": i, "email": f"user{i}@corp.example", "name": f"Person {i}",
            "address": {"city": ["Lyon", "Paris"][i % 2], "zip": str(69000 + i % 50)},
            "items": [{"sku": f"SKU-{i}-{k}", "qty": k + 1} for k in range(i % 3)],
            "born": {"$date": {"$numberLong": str(315532800000 + i * 86400000)}},
            "score": {"$numberDecimal": f"{i}.5"}, "ratio": i / 7.0,
            "big": {"$numberLong": str(2**40 + i)},
            "oid": {"$oid": "%024x" % (0x65a1b2c3d4e5f60718293a00 + i)},
            "bin": {"$binary": {"base64": "AAECAwQ=", "subType": "00"}},
            "flag": i % 2 == 0, "nothing": None, "pad": "p" * (i % 400),
        })
    mongo.insert("shop", "people", docs)
    mongo.command("shop", {"createIndexes": "people", "indexes": [
        {"key": {"email": 1}, "name": "email_1", "unique": True},
        {"key": {"address.city": 1, "born": -1}, "name": "city_born"},
        {"key": {"name": "text"}, "name": "name_text", "weights": {"name": 3}}]})
    mongo.command("shop", {"create": "log", "capped": True, "size": 65536})
    mongo.insert("shop", "log", [{"_id": i, "line": f"event {i}"} for i in range(5)])
    mongo.command("shop", {"create": "empty"})
    mongo.command("shop", {"create": "adults", "viewOn": "people",
                           "pipeline": [{"$match": {"_id": {"$gte": 100}}}]})
    mongo.command("shop", {"create": "a/b"})
    mongo.insert("shop", "a/b", [{"_id": 1}])
    mongo.insert("crm", "leads", [{"_id": 1, "who": "x"}])


def extract(archive, into):
    subprocess.run(["tar", "--zstd", "-xf", archive, "-C", into], check=True)
    for d in sorted(glob.glob(os.path.join(into, "mongo", "*", "*.bson"))):
        with open(d + ".out", "wb") as out:
            for chunk in sorted(os.listdir(d)):
                with open(os.path.join(d, chunk), "rb") as f:
                    shutil.copyfileobj(f, out)
        shutil.rmtree(d)
        os.rename(d + ".out", d)


def full_fingerprint():
    return {db: mongo.fingerprint(db) for db in ("shop", "crm")}


def main():
    store = common.tmpdir()
    dbl = mongo.MongoDouble()
    uri = dbl.start()
    mongo.use(uri)
    fixture()
    before = full_fingerprint()
    raw_people = list(dbl.dbs["shop"]["people"].docs)
    env = dict(os.environ, DSD_SOURCE_URI=uri, DSD_TARGET_URI=uri)

    # ---- dump of every database, verify, layout
    archive = os.path.join(store, "all.tar.zst")
    p = run([DSD, "dump", "--to", "file://" + archive, "--dialect", "mongo"], env)
    check(p.returncode == 0, f"dump failed: {p.stderr}")
    p = run([DSD, "verify", "file://" + archive], env)
    check(p.returncode == 0, f"verify failed: {p.stdout}{p.stderr}")
    x = common.tmpdir()
    extract(archive, x)
    with open(os.path.join(x, "manifest.json")) as f:
        manifest = json.load(f)
    check(manifest["mongo"]["databases"] == ["crm", "shop"], f"databases {manifest['mongo']}")
    check(manifest["mongo"]["snapshot"] is False, "snapshot on a standalone")
    est = sum(len(d) for db in ("shop", "crm") for c in dbl.dbs[db].values() for d in c.docs)
    check(manifest["mongo"]["est_bytes"] == est, f"est_bytes {manifest['mongo']} != {est}")
    base = os.path.join(x, "mongo", "shop")
    with open(os.path.join(base, "people.bson"), "rb") as f:
        check(f.read() == b"".join(raw_people), "people.bson differs from the stored documents")
    with open(os.path.join(base, "people.metadata.json")) as f:
        meta = json.load(f)
    check(list(meta) == ["options", "indexes", "uuid", "collectionName", "type"],
          f"metadata keys {list(meta)}")
    check(len(meta["uuid"]) == 32 and meta["options"]["collation"]["locale"] == "fr",
          f"metadata {meta}")
    check(os.path.exists(os.path.join(base, "a%2Fb.bson")), "escaped name")
    check(os.path.exists(os.path.join(base, "adults.metadata.json"))
          and not os.path.exists(os.path.join(base, "adults.bson")), "view layout")
    check(os.path.getsize(os.path.join(base, "empty.bson")) == 0, "empty collection")

    # ---- restore with clean over changes
    mongo.command("shop", {"drop": "people"})
    mongo.insert("shop", "people", [{"_id": -1, "email": "stray"}])
    mongo.command("shop", {"drop": "adults"})
    mongo.insert("shop", "log", [{"_id": 99}])
    dbl.log.clear()
    p = run([DSD, "restore", "--from", "file://" + archive], env)
    check(p.returncode == 0, f"restore failed: {p.stderr}")
    check(full_fingerprint() == before, "restore with clean differs")
    check(dbl.dbs["shop"]["people"].docs == raw_people, "documents not byte for byte")
    inserts = [e for e in dbl.log if e[0] == "insert" and e[2] == "people"]
    check([e[4]["n"] for e in inserts] == [1000, 1000, 500], f"batches {inserts}")
    check(all(e[4]["ordered"] is False for e in inserts), "inserts are ordered")
    names = [e[0] for e in dbl.log]
    last_insert = max(i for i, n in enumerate(names) if n == "insert")
    first_index = min(i for i, n in enumerate(names) if n == "createIndexes")
    check(first_index > last_insert, "indexes built before the data was in")

    # ---- restore without clean into an empty server
    dbl2 = mongo.MongoDouble()
    uri2 = dbl2.start()
    p = run([DSD, "restore", "--from", "file://" + archive, "--no-clean"],
            dict(env, DSD_TARGET_URI=uri2))
    check(p.returncode == 0, f"restore --no-clean failed: {p.stderr}")
    check(not any(e[0] == "drop" for e in dbl2.log), "drop without clean")
    mongo.use(uri2)
    check(full_fingerprint() == before, "restore into an empty server differs")
    mongo.use(uri)

    # ---- snapshot reads on a replica set
    rs = mongo.MongoDouble(replset=True)
    rsuri = rs.start()
    mongo.use(rsuri)
    mongo.insert("shop", "a", [{"_id": i} for i in range(300)])
    mongo.insert("shop", "b", [{"_id": i} for i in range(10)])
    rs.log.clear()
    p = run([DSD, "dump", "--to", "file://" + os.path.join(store, "rs.tar.zst")],
            dict(env, DSD_SOURCE_URI=rsuri.replace("/?", "/shop?")))
    check(p.returncode == 0, f"replica-set dump failed: {p.stderr}")
    finds = [e for e in rs.log if e[0] == "find"]
    check(len(finds) == 2 and all(e[3] == "snapshot" for e in finds), f"finds {finds}")
    check("atClusterTime" not in finds[0][4], "the first snapshot read names a time")
    check(finds[1][4].get("atClusterTime") == rs.cluster_time,
          f"the second read is not at the first one's cluster time: {finds[1]}")
    mongo.use(uri)

    # ---- anonymization
    rules = os.path.join(store, "rules.json")
    with open(rules, "w") as f:
        json.dump({"tables": {"shop.people": {"email": "email", "address.city": "hash",
                                              "items.sku": "hash", "oid": "hash"}}}, f)
    aarch = os.path.join(store, "anon.tar.zst")
    p = run([DSD, "dump", "--to", "file://" + aarch, "--anonymize", rules, "--quiet"],
            dict(env, DSD_SOURCE_URI=uri.replace("/?", "/shop?")))
    check(p.returncode == 0, f"anonymized dump failed: {p.stderr}")
    dbl3 = mongo.MongoDouble()
    uri3 = dbl3.start()
    # A one-database dump goes into the database the target URI names.
    p = run([DSD, "restore", "--from", "file://" + aarch],
            dict(env, DSD_TARGET_URI=uri3.replace("/?", "/copy?")))
    check(p.returncode == 0, f"restore of the anonymized dump failed: {p.stderr}")
    check(set(dbl3.dbs) == {"copy"}, f"restored into {set(dbl3.dbs)}, not copy")
    mongo.use(uri3)
    anon = mongo.find("copy", "people")
    mongo.use(uri)
    orig = before["shop"]["people"]["docs"]
    check(len(anon) == len(orig), "anonymized count")
    emails = set()
    for a, o in zip(anon, orig):
        check(a["_id"] == o["_id"] and a["name"] == o["name"] and a["born"] == o["born"],
              "kept fields changed")
        check(a["email"] != o["email"] and a["email"].endswith("@example.com"), "email kept")
        emails.add(a["email"])
        check(a["address"]["city"] != o["address"]["city"], "address.city kept")
        check(a["address"]["zip"] == o["address"]["zip"], "address.zip changed")
        check("$oid" in a["oid"] and a["oid"] != o["oid"], "oid not hashed to an ObjectId")
        for ai, oi in zip(a["items"], o["items"]):
            check(ai["sku"] != oi["sku"] and ai["qty"] == oi["qty"], "items.sku kept")
    check(len(emails) == len(orig), "anonymized emails collide")

    # ---- cancel
    slow = mongo.MongoDouble(slow=0.05)
    suri = slow.start()
    mongo.use(suri)
    mongo.insert_generated("big", "c", 20000)  # 200 getMore batches: 10 s
    carch = os.path.join(store, "cancel.tar.zst")
    proc = subprocess.Popen([DSD, "dump", "--to", "file://" + carch, "--quiet"],
                            env=dict(env, DSD_SOURCE_URI=suri), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Signal once the documents are flowing (dsd has its handler by then),
    # however slow the machine is.
    deadline = time.monotonic() + 60
    while not any(e[0] == "getMore" for e in slow.log) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(proc.poll() is None, "the slow dump ended before it could be canceled")
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=60)
    check(proc.returncode != 0, "the dump was not canceled")
    check("cancel" in (out + errs).lower(), f"cancel not reported: {errs}")
    check(not os.path.exists(carch), "a canceled dump left an archive")
    check(not [n for n in os.listdir(store) if n.startswith("cancel")], "leftovers in the store")

    # ---- authentication refused: no password anywhere
    password = "Pw-never-shown-42"
    auri = uri.replace("mongodb://", f"mongodb://bob:{password}@").replace(
        "/?", "/shop?authSource=admin&serverSelectionTimeoutMS=3000&")
    p = run([DSD, "dump", "--to", "file://" + os.path.join(store, "auth.tar.zst")],
            dict(env, DSD_SOURCE_URI=auri))
    check(p.returncode != 0, "a dump with refused credentials succeeded")
    check(password not in p.stdout + p.stderr, "the password reached the output")
    check("mongodb" in p.stderr, f"unclear message: {p.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
