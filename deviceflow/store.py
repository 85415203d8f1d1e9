"""Storage: a small expiring key-value interface and its two implementations.

Records are JSON-able dicts filed under a `kind` ("flow", "refresh", ...) and a
key. Every record carries its own expiry and an expired record is never
served, even before it is purged. The steps that must happen once - delivering
a token, consuming a `state` - are single atomic operations (`take`,
`update_if`), so two processes or two MongoDB clients never both win.

SQLite is the embedded default (WAL, a connection per thread for reads, one
shared by the threads for single-statement writes; safe for several processes
on one host); MongoDB serves several instances behind a load balancer. Both
raise `StoreUnavailable` instead of their own errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from deviceflow.errors import StoreUnavailable

log = logging.getLogger("deviceflow.store")

# Pairs read by one statement of get_many: SQLite takes at most 500 SELECTs joined by UNION ALL.
GET_MANY_CHUNK = 250
# (kind, key, value, ttl): a record to write.
Record = tuple[str, str, dict, float]


def digest(secret: str) -> str:
    """SHA-256 of a token: tokens and device codes are stored, and looked up, by digest only."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Store:
    """The interface the flow, the upstream client and the tools rely on."""

    # Called (no argument) each time an operation fails with StoreUnavailable:
    # the metrics count store errors through it.
    on_error = None

    def _failed(self) -> None:
        if self.on_error is not None:
            self.on_error()

    def put(self, kind: str, key: str, value: dict, ttl: float) -> None:
        """Write (or overwrite) a record living `ttl` seconds."""
        raise NotImplementedError

    def add(self, kind: str, key: str, value: dict, ttl: float, also: Sequence[Record] = ()) -> bool:
        """Write only if no live record has this key; True when written. `also`: (kind, key, value, ttl)
        records written with it as `put` writes them, only when it is written (SQLite: in the same statement)."""
        raise NotImplementedError

    def get(self, kind: str, key: str) -> dict | None:
        """The live record, or None."""
        raise NotImplementedError

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The live records among `keys`, (kind, key) pairs, by pair, read at once."""
        return {(kind, key): value for kind, key in keys if (value := self.get(kind, key)) is not None}

    def take(self, kind: str, key: str) -> dict | None:
        """Atomically read and delete the live record: one caller gets it."""
        raise NotImplementedError

    def update_if(self, kind: str, key: str, expect: dict, changes: dict, ttl: float | None = None) -> dict | None:
        """Compare-and-set: when the live record's fields equal `expect`, merge
        `changes` (and renew the expiry if `ttl`) and return the record as it
        was before; otherwise None. A field expected to be None also matches
        a missing field."""
        raise NotImplementedError

    def incr(self, kind: str, key: str, window: float) -> int:
        """Count a hit in a fixed window starting with the first hit; the count so far."""
        raise NotImplementedError

    def delete(self, kind: str, key: str) -> None:
        raise NotImplementedError

    def count(self, kind: str) -> int:
        """Live records of a kind."""
        raise NotImplementedError

    def scan(self, kind: str) -> Iterator[tuple[str, dict]]:
        """Every live record of a kind as (key, value), in no particular order.
        For the operator's tools (revoke by usage point, stats), not for requests."""
        raise NotImplementedError

    def purge(self) -> int:
        """Delete expired records; how many went."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        raise NotImplementedError

    @contextmanager
    def batch(self):
        """The writes made within, committed together where the store can (SQLite: one transaction, so
        one commit instead of one each); each write keeps its own atomicity either way. Reads within may not
        see the batch's writes before it ends. A StoreUnavailable within may undo the batch's earlier writes;
        any other exception leaves them written."""
        yield

    def close(self) -> None:
        pass


def _matches(value: dict, expect: dict) -> bool:
    return all(value.get(k) == v for k, v in expect.items())


# The store holds the CSRF key, user codes, states, meter numbers and, in
# FLOW=DEVICE without a configured secret, a device's lent client_secret:
# only the server's own account may read it, whatever the umask.
FILE_MODE, FOLDER_MODE = 0o600, 0o700
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def private_files(path: Path) -> None:
    """Create the SQLite file 0600 (its folder 0700 when created here), before
    SQLite opens it: SQLite gives its -wal and -shm files the database file's
    mode. A file already there and readable by others is tightened, with a WARNING."""
    try:
        path.parent.mkdir(parents=True, mode=FOLDER_MODE)
        os.chmod(path.parent, FOLDER_MODE)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass  # the operator's folder: left as it is
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for companion in SQLITE_COMPANIONS:
        file = Path(f"{path}{companion}")
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(file, FILE_MODE)
                log.warning("the store file %s was open to other accounts (mode %03o): now %03o", file, mode, FILE_MODE)
        except FileNotFoundError:
            continue
        except OSError as error:  # another account's file: say so, the server still runs
            log.warning(
                "the store file %s is open to other accounts and cannot be tightened (%s)", file, type(error).__name__
            )


class SQLiteStore(Store):
    # WAL lets readers go on while one process writes; synchronous=NORMAL keeps
    # every committed transaction through a process crash (SIGKILL): only a
    # power cut may lose the last ones, which for this data means a device
    # polls or refreshes once more.
    # secure_delete: a deleted or overwritten record's bytes are zeroed in its page. In WAL mode the
    # zeroed page is a new WAL frame, and reaches the database file at the next checkpoint; older
    # frames keep the former content until the WAL is reset and overwritten, or truncated (`purge`).
    PRAGMAS = (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA temp_store=MEMORY",
        "PRAGMA secure_delete=ON",
    )

    def __init__(self, path: str, clock=time.time, busy_timeout: float = 5.0):
        self.clock = clock
        self.busy_timeout = busy_timeout
        if path == ":memory:":
            # A throwaway database, in a private folder removed when the store goes. A file rather
            # than SQLite's shared-cache memory database: there, a reader meeting a writer gets
            # "table is locked" at once instead of waiting, and concurrent requests got 503.
            folder = tempfile.mkdtemp(prefix="deviceflow-demo-")
            self._remove_folder = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            path = str(Path(folder) / "store.sqlite3")
        private_files(Path(path))
        self.path = path
        self.local = threading.local()
        # A process writes through one connection, one statement at a time
        # under a lock, so that its own writers never meet in SQLite's busy
        # handler (which sleeps up to 100 ms a time). Without the lock, threads'
        # statements overlapped on that connection, and SQLite commits only when
        # none is running: under load the writes stayed invisible to the readers
        # and to other processes, and a crash would have lost them. Reads use
        # the thread's own connection; other processes wait in the busy handler.
        self._writer = None
        self._writing = threading.RLock()  # held across a batch, whose writes take it again
        self._batch_depth = 0
        with self._errors():
            conn = self._conn()
            conn.execute(
                "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL,"
                " value TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        for pragma in self.PRAGMAS:
            conn.execute(pragma)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self._connect()
        return conn

    @contextmanager
    def _errors(self, shared: bool = False):
        """SQLite errors become StoreUnavailable, and the broken connection is
        dropped so that the next call reconnects: the server recovers by itself.
        `shared`: the writer's, dropped under the write lock that its caller holds."""
        try:
            yield
        except sqlite3.Error as exc:
            if shared:
                conn, self._writer = self._writer, None
            else:
                conn, self.local.conn = getattr(self.local, "conn", None), None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            log.warning("store error: %s", exc)
            self._failed()
            raise StoreUnavailable("the store is not available") from exc

    def _write(self, sql: str, args=(), changes: bool = False):
        """One statement that writes, on the shared writer connection, run to
        its end (and so committed, unless a batch is open) before the next one starts; its rows,
        or with `changes` the number of records it wrote (a statement without RETURNING runs in one step)."""
        with self._writing, self._errors(shared=True):
            if self._writer is None:
                self._writer = self._connect()
            elif not self._batch_depth and self._writer.in_transaction:
                # A batch ended by an exception between its BEGIN and its COMMIT (a signal's KeyboardInterrupt):
                # left open, its transaction would take every later write and hold the database's write lock.
                log.warning("a batch was left open: committed")
                self._writer.execute("COMMIT")
            cursor = self._writer.execute(sql, args)
            return cursor.rowcount if changes else cursor.fetchall()

    @contextmanager
    def batch(self):
        # The write lock is held from BEGIN to COMMIT: this process's other writers wait for the whole batch,
        # so a batch holds only statements and the little code between them.
        with self._writing:
            self._batch_depth += 1
            try:
                if self._batch_depth > 1:
                    yield
                    return
                try:
                    self._write("BEGIN IMMEDIATE")
                    yield
                finally:
                    if self._writer is not None and self._writer.in_transaction:  # else dropped on an error
                        self._write("COMMIT")
            finally:
                self._batch_depth -= 1

    def put(self, kind, key, value, ttl):
        self._write(
            "INSERT INTO records VALUES (?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE"
            " SET value = excluded.value, expires_at = excluded.expires_at",
            (kind, key, json.dumps(value), self.clock() + ttl),
        )

    def add(self, kind, key, value, ttl, also=()):
        # One statement without RETURNING: the key's check and every write are one step of SQLite, and each
        # step releases the GIL (a returned row is a step of its own).
        now = self.clock()
        rows = [(kind, key, value, ttl), *also]
        written = self._write(
            f"INSERT INTO records SELECT * FROM (VALUES {', '.join(['(?, ?, ?, ?)'] * len(rows))})"
            " WHERE NOT EXISTS (SELECT 1 FROM records WHERE kind = ? AND key = ? AND expires_at > ?)"
            " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (*(field for k, kk, v, t in rows for field in (k, kk, json.dumps(v), now + t)), kind, key, now),
            changes=True,
        )
        return written > 0

    def _read(self, sql: str, args=()) -> list:
        """Every row of a query on the thread's own connection. All of them:
        a statement left on its first row keeps its read transaction, and the
        next reads on that connection would see the database as it was then."""
        with self._errors():
            return self._conn().execute(sql, args).fetchall()

    def _value(self, kind, key) -> str | None:
        rows = self._read(
            "SELECT value FROM records WHERE kind = ? AND key = ? AND expires_at > ?", (kind, key, self.clock())
        )
        return rows[0][0] if rows else None

    def get(self, kind, key):
        text = self._value(kind, key)
        return json.loads(text) if text is not None else None

    def get_many(self, keys):
        keys = list(keys)
        if not keys:
            return {}
        # One row whatever the number of records: SQLite releases the GIL at every row it steps to.
        now, records = self.clock(), {}
        for start in range(0, len(keys), GET_MANY_CHUNK):
            chunk = keys[start : start + GET_MANY_CHUNK]
            lookups = " UNION ALL ".join(
                ["SELECT kind, key, value FROM records WHERE kind = ? AND key = ? AND expires_at > ?"] * len(chunk)
            )
            ((found,),) = self._read(
                f"SELECT json_group_array(json_array(kind, key, json(value))) FROM ({lookups})",
                [part for kind, key in chunk for part in (kind, key, now)],
            )
            records.update(((kind, key), value) for kind, key, value in json.loads(found))
        return records

    def take(self, kind, key):
        rows = self._write(
            "DELETE FROM records WHERE kind = ? AND key = ? AND expires_at > ? RETURNING value",
            (kind, key, self.clock()),
        )
        return json.loads(rows[0][0]) if rows else None

    def update_if(self, kind, key, expect, changes, ttl=None):
        # Read, then write only if the stored text is still what was read: a
        # compare-and-set in one statement on the shared writer. A transaction
        # on the thread's own connection would hold the write lock across GIL
        # hand-offs, while a thread holding the GIL waits on the writer's mutex
        # behind a statement waiting for that lock: the process stood still.
        for _ in range(8):
            text = self._value(kind, key)
            if text is None:
                return None
            before = json.loads(text)
            if not _matches(before, expect):
                return None
            now = self.clock()
            if (
                self._write(
                    "UPDATE records SET value = ?, expires_at = CASE WHEN ? THEN ? ELSE expires_at END"
                    " WHERE kind = ? AND key = ? AND value = ? AND expires_at > ?",
                    (json.dumps({**before, **changes}), ttl is not None, now + (ttl or 0), kind, key, text, now),
                    changes=True,
                )
                > 0
            ):
                return before
            # else another writer changed the record in between: look again
        raise StoreUnavailable("record contention")

    def incr(self, kind, key, window):
        # Within a window only the count changes: one page written, the expiry
        # and its index left alone (a poll is a write; this keeps it small).
        now = self.clock()
        for _ in range(3):
            rows = self._write(
                "INSERT INTO records VALUES (?, ?, '1', ?) ON CONFLICT (kind, key) DO UPDATE"
                " SET value = CAST(CAST(records.value AS INTEGER) + 1 AS TEXT)"
                " WHERE records.expires_at > ? RETURNING value",
                (kind, key, now + window, now),
            )
            rows = rows or self._write(
                "UPDATE records SET value = '1', expires_at = ?"
                " WHERE kind = ? AND key = ? AND expires_at <= ? RETURNING value",
                (now + window, kind, key, now),
            )
            if rows:  # else another process opened the new window in between: count in it
                return int(rows[0][0])
        raise StoreUnavailable("counter contention")

    def delete(self, kind, key):
        self._write("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def count(self, kind):
        return self._read("SELECT COUNT(*) FROM records WHERE kind = ? AND expires_at > ?", (kind, self.clock()))[0][0]

    def scan(self, kind):
        rows = self._read("SELECT key, value FROM records WHERE kind = ? AND expires_at > ?", (kind, self.clock()))
        return ((key, json.loads(value)) for key, value in rows)

    def purge(self, batch: int = 500):
        # In batches, each its own statement: the server's writers wait for one
        # batch at most, not for the whole backlog of a server that never purged.
        now, purged = self.clock(), 0
        while True:
            gone = self._write(
                "DELETE FROM records WHERE (kind, key) IN"
                " (SELECT kind, key FROM records WHERE expires_at <= ? LIMIT ?)",
                (now, batch),
                changes=True,
            )
            purged += gone
            if gone < batch:
                self._truncate_wal()
                return purged

    def _truncate_wal(self) -> None:
        """Copy the WAL into the database file and empty it, so that deleted records leave no old frame
        behind; skipped when readers would make it wait (the next purge tries again)."""
        with self._writing, self._errors(shared=True):
            if self._writer is None:
                self._writer = self._connect()
            self._writer.execute("PRAGMA busy_timeout = 100")
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                self._writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def ping(self):
        self._read("SELECT 1")

    def close(self):
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


class MongoStore(Store):
    """Documents {_id: "kind:key", kind, v: value, exp: datetime}. A TTL index
    removes expired documents eventually (MongoDB's monitor runs every 60 s),
    so every query also says `exp > now`."""

    def __init__(self, client, db_name: str = "deviceflow", clock=time.time):
        import pymongo
        from pymongo import errors

        self.pymongo, self.errors = pymongo, errors
        self.client = client
        self.clock = clock
        self.col = client[db_name]["records"]
        with self._errors():
            self.col.create_index("exp", expireAfterSeconds=0)
            self.col.create_index([("kind", 1), ("exp", 1)])

    @classmethod
    def from_uri(cls, uri: str, db_name: str, clock=time.time) -> MongoStore:
        import pymongo

        client = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000, socketTimeoutMS=10000, tz_aware=False
        )
        return cls(client, db_name, clock)

    @contextmanager
    def _errors(self):
        try:
            yield
        except self.errors.DuplicateKeyError:
            raise
        except self.errors.PyMongoError as exc:
            log.warning("store error: %s", type(exc).__name__)
            self._failed()
            raise StoreUnavailable("the store is not available") from exc

    def _at(self, offset: float = 0.0) -> datetime:
        # BSON dates have millisecond precision and no zone: naive UTC.
        return datetime.fromtimestamp(self.clock() + offset, UTC).replace(tzinfo=None)

    @staticmethod
    def _id(kind, key):
        return f"{kind}:{key}"

    def put(self, kind, key, value, ttl):
        with self._errors():
            self.col.replace_one(
                {"_id": self._id(kind, key)}, {"kind": kind, "v": value, "exp": self._at(ttl)}, upsert=True
            )

    def add(self, kind, key, value, ttl, also=()):
        with self._errors():
            try:
                self.col.update_one(
                    {"_id": self._id(kind, key), "exp": {"$lte": self._at()}},
                    {"$set": {"kind": kind, "v": value, "exp": self._at(ttl)}},
                    upsert=True,
                )
            except self.errors.DuplicateKeyError:
                return False  # a live record holds the key
        for record in also:
            self.put(*record)
        return True

    def get(self, kind, key):
        with self._errors():
            doc = self.col.find_one({"_id": self._id(kind, key), "exp": {"$gt": self._at()}})
        return doc["v"] if doc else None

    def get_many(self, keys):
        ids = {self._id(kind, key): (kind, key) for kind, key in keys}
        with self._errors():
            docs = list(self.col.find({"_id": {"$in": list(ids)}, "exp": {"$gt": self._at()}}, {"v": 1}))
        return {ids[doc["_id"]]: doc["v"] for doc in docs}

    def take(self, kind, key):
        with self._errors():
            doc = self.col.find_one_and_delete({"_id": self._id(kind, key), "exp": {"$gt": self._at()}})
        return doc["v"] if doc else None

    def update_if(self, kind, key, expect, changes, ttl=None):
        query = {"_id": self._id(kind, key), "exp": {"$gt": self._at()}}
        query.update({f"v.{k}": v for k, v in expect.items()})
        update = {f"v.{k}": v for k, v in changes.items()}
        if ttl is not None:
            update["exp"] = self._at(ttl)
        with self._errors():
            doc = self.col.find_one_and_update(
                query, {"$set": update}, return_document=self.pymongo.ReturnDocument.BEFORE
            )
        return doc["v"] if doc else None

    def incr(self, kind, key, window):
        _id = self._id(kind, key)
        with self._errors():
            for _ in range(5):
                doc = self.col.find_one_and_update(
                    {"_id": _id, "exp": {"$gt": self._at()}},
                    {"$inc": {"v": 1}},
                    return_document=self.pymongo.ReturnDocument.AFTER,
                )
                if doc:
                    return int(doc["v"])
                try:
                    self.col.update_one(
                        {"_id": _id, "exp": {"$lte": self._at()}},
                        {"$set": {"kind": kind, "v": 1, "exp": self._at(window)}},
                        upsert=True,
                    )
                    return 1
                except self.errors.DuplicateKeyError:
                    continue  # another instance opened the window first: count in it
        raise StoreUnavailable("counter contention")

    def delete(self, kind, key):
        with self._errors():
            self.col.delete_one({"_id": self._id(kind, key)})

    def count(self, kind):
        with self._errors():
            return self.col.count_documents({"kind": kind, "exp": {"$gt": self._at()}})

    def scan(self, kind):
        prefix = len(kind) + 1
        with self._errors():
            docs = list(self.col.find({"kind": kind, "exp": {"$gt": self._at()}}, {"v": 1}))
        return ((doc["_id"][prefix:], doc["v"]) for doc in docs)

    def purge(self):
        with self._errors():
            return self.col.delete_many({"exp": {"$lte": self._at()}}).deleted_count

    def ping(self):
        with self._errors():
            self.col.find_one({"_id": "ping"})

    def close(self):
        self.client.close()


def open_store(config, clock=time.time) -> Store:
    if config.db_type == "mongodb":
        return MongoStore.from_uri(config.mongodb_uri, config.mongodb_db, clock)
    return SQLiteStore(config.sqlite_path, clock)
