"""Enrolled identities, so tracks in either stream can be named: a SQLite file on the box,
or a PostgreSQL database that every box of a site shares.

Each enrolment is one row per image embedding (name, modality, vector) written in a single
transaction: a killed process leaves either all of an enrolment or none of it (SQLite's
journal with ``synchronous=FULL``; PostgreSQL's transactions). A gallery belongs to one
model: embeddings of different weights or embedding settings are not comparable, so the
store records the model's :class:`ModelIdentity` (the checkpoint its weights come from, the
variant, flip and ``a``) and refuses another, naming both in words. Every verified export of
one checkpoint (the checkpoint itself, an fp32 ONNX, an int8 OpenVINO IR) embeds alike
within its export tolerance and so shares one gallery.

:data:`GALLERY_STORES` is the table of kinds: a location names its kind by its URL scheme
(``postgresql://``, ``postgres://``) or is a file path. A running ``deen run`` calls
:meth:`Gallery.refresh` every second: an enrolment made elsewhere (another box, ``deen
gallery add``) is picked up within about a second, and a database that goes away is
reported by the caller and retried, while the names already loaded keep working.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from deen.embedding import EmbeddingConfig
from deen.errors import DeenError, first_line, redact, redact_url
from deen.fileio import sha256_file
from deen.modality import Modality

if TYPE_CHECKING:
    from deen.backends.base import Embedder

DEFAULT_GALLERY_THRESHOLD = 0.6
#: Seconds a database connection attempt may take before the gallery gives up on it.
CONNECT_TIMEOUT_S = 5

#: One enrolled image: (name, modality, source, vector bytes (float32), added Unix time).
Row = tuple[str, int, str, bytes, float]


@runtime_checkable
class GalleryStore(Protocol):
    """Where a gallery's rows live. Every method is one statement or one transaction."""

    location: str  # how messages name it (no password)

    def meta(self) -> dict[str, str]:
        """The recorded model and embedding size (empty for a new gallery)."""

    def claim(self, entries: dict[str, str]) -> dict[str, str]:
        """Record ``entries`` (``model``, ``dim``, ``described``) where nothing is recorded
        yet; return what is."""

    def insert(self, rows: Iterable[Row]) -> int:
        """Add every row in one transaction: all of them or, on any failure, none."""

    def delete(self, name: str) -> int:
        """Remove every row of ``name``; how many."""

    def vectors(self) -> list[tuple[str, bytes]]:
        """(name, vector bytes) of every row, oldest first."""

    def identities(self) -> list[tuple[str, int, int]]:
        """(name, visible images, infrared images) per name."""

    def version(self) -> tuple[int, int]:
        """Changes whenever rows are added or removed: (row count, newest row id)."""

    def close(self) -> None: ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    modality INTEGER NOT NULL,
    source TEXT NOT NULL,
    vector BLOB NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_name ON embeddings(name);
"""


class SqliteStore:
    """A gallery in one SQLite file (WAL, ``synchronous=FULL``)."""

    def __init__(self, path: Path, create: bool = True, read_only: bool = False) -> None:
        """``create=False`` refuses a file that is not there (a run reads a gallery that
        ``deen gallery add`` made; a mistyped path must not become an empty gallery)."""
        self.path = Path(path)
        self.location = str(self.path)
        if not create and not self.path.is_file():
            raise DeenError(f"{self.path}: no such gallery file (deen gallery add creates one)")
        try:
            if read_only:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SQLITE_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DeenError(f"{self.path}: not a usable gallery database ({exc})") from None

    def _transaction(self) -> _SqliteTransaction:
        return _SqliteTransaction(self.db)

    def meta(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DeenError(f"{self.path}: not a gallery database ({exc})") from None

    def claim(self, entries: dict[str, str]) -> dict[str, str]:
        with self._transaction():
            if not self.db.execute("SELECT 1 FROM meta WHERE key = 'model'").fetchone():
                self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                    list(entries.items()))
        return self.meta()

    def insert(self, rows: Iterable[Row]) -> int:
        with self._transaction():
            return self.db.executemany(
                "INSERT INTO embeddings (name, modality, source, vector, added) "
                "VALUES (?, ?, ?, ?, ?)", rows).rowcount

    def delete(self, name: str) -> int:
        with self._transaction():
            return self.db.execute("DELETE FROM embeddings WHERE name = ?", (name,)).rowcount

    def vectors(self) -> list[tuple[str, bytes]]:
        return self.db.execute("SELECT name, vector FROM embeddings ORDER BY id").fetchall()

    def identities(self) -> list[tuple[str, int, int]]:
        rows = self.db.execute(
            "SELECT name, SUM(modality = 0), SUM(modality = 1) FROM embeddings "
            "GROUP BY name ORDER BY name").fetchall()
        return [(n, int(v), int(r)) for n, v, r in rows]

    def version(self) -> tuple[int, int]:
        count, newest = self.db.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM embeddings").fetchone()
        return int(count), int(newest)

    def close(self) -> None:
        self.db.close()


class _SqliteTransaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")


_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS deen_gallery_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deen_gallery (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    modality SMALLINT NOT NULL,
    source TEXT NOT NULL,
    vector BYTEA NOT NULL,
    added DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS deen_gallery_name ON deen_gallery(name);
"""
#: Serialises schema creation between boxes that start at the same moment.
_SCHEMA_LOCK = 0x6465656E  # "deen"


class PostgresStore:
    """A gallery in a PostgreSQL database (tables ``deen_gallery`` and
    ``deen_gallery_meta``), through psycopg 3. The connection is remade after the server
    went away; the call that found it gone raises :class:`DeenError`."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.url, self.location = url, redact_url(url)
        self._db: Any = None
        self._connect()
        if create:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._db.execute(_POSTGRES_SCHEMA)
        elif not self.meta():
            raise DeenError(f"{self.location}: no gallery in this database "
                            "(deen gallery add creates one)")

    def _connect(self) -> Any:
        import psycopg

        try:
            self._db = psycopg.connect(self.url, autocommit=True,
                                       connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise DeenError(f"{self.location}: cannot connect to the gallery database "
                            f"({redact(_pg_reason(exc), self.url)})") from None
        return self._db

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """``work(connection)``, reconnecting first if the last call lost the server."""
        import psycopg

        try:
            if self._db is None or self._db.closed or self._db.broken:
                self._connect()
            return work(self._db)
        except psycopg.OperationalError as exc:
            if self._db is not None:
                self._db.close()
            raise DeenError(f"{self.location}: the gallery database went away "
                            f"({redact(_pg_reason(exc), self.url)})") from None

    def meta(self) -> dict[str, str]:
        def read(db: Any) -> dict[str, str]:
            exists = db.execute("SELECT to_regclass('deen_gallery_meta')").fetchone()[0]
            if exists is None:
                return {}
            return dict(db.execute("SELECT key, value FROM deen_gallery_meta").fetchall())
        return self._run(read)

    def claim(self, entries: dict[str, str]) -> dict[str, str]:
        def write(db: Any) -> None:
            with db.transaction():
                db.execute("LOCK TABLE deen_gallery_meta IN EXCLUSIVE MODE")
                if db.execute("SELECT 1 FROM deen_gallery_meta WHERE key = 'model'"
                              ).fetchone():
                    return
                db.cursor().executemany(
                    "INSERT INTO deen_gallery_meta VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    list(entries.items()))
        self._run(write)
        return self.meta()

    def insert(self, rows: Iterable[Row]) -> int:
        def write(db: Any) -> int:
            with db.transaction(), db.cursor() as cursor:
                count = 0
                for row in rows:  # one transaction: a kill on the way leaves none of them
                    cursor.execute("INSERT INTO deen_gallery (name, modality, source, vector, "
                                   "added) VALUES (%s, %s, %s, %s, %s)", row)
                    count += 1
                return count
        return self._run(write)

    def delete(self, name: str) -> int:
        return self._run(lambda db: db.execute("DELETE FROM deen_gallery WHERE name = %s",
                                               (name,)).rowcount)

    def vectors(self) -> list[tuple[str, bytes]]:
        return self._run(lambda db: [(n, bytes(v)) for n, v in db.execute(
            "SELECT name, vector FROM deen_gallery ORDER BY id").fetchall()])

    def identities(self) -> list[tuple[str, int, int]]:
        rows = self._run(lambda db: db.execute(
            "SELECT name, COUNT(*) FILTER (WHERE modality = 0), "
            "COUNT(*) FILTER (WHERE modality = 1) FROM deen_gallery "
            "GROUP BY name ORDER BY name").fetchall())
        return [(n, int(v), int(r)) for n, v, r in rows]

    def version(self) -> tuple[int, int]:
        count, newest = self._run(lambda db: db.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM deen_gallery").fetchone())
        return int(count), int(newest)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _pg_reason(exc: BaseException) -> str:
    text = first_line(exc)
    for noise in (r"^connection failed: ", r"^connection to server at [^,]*, port \d+ failed: ",
                  r"^FATAL: +"):
        text = re.sub(noise, "", text)
    return text


class StoreKind(str, Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True)
class StoreFormat:
    """One row of :data:`GALLERY_STORES`: a kind of gallery location and how to open it."""

    kind: StoreKind
    schemes: tuple[str, ...]  # URL schemes that name it; () for a file path
    example: str
    open: Callable[[str, bool], GalleryStore]  # (location, create) -> store


#: Every kind of gallery location: one row each.
GALLERY_STORES: tuple[StoreFormat, ...] = (
    StoreFormat(StoreKind.SQLITE, (), "gallery.db",
                lambda location, create: SqliteStore(Path(location), create)),
    StoreFormat(StoreKind.POSTGRES, ("postgresql", "postgres"),
                "postgresql://USER[:PASS]@HOST[:PORT]/DB", PostgresStore),
)


def store_format(location: str | Path) -> StoreFormat:
    """The row of :data:`GALLERY_STORES` that ``location`` names (by scheme; else a file)."""
    text = str(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    for row in GALLERY_STORES:
        if scheme in row.schemes:
            return row
    if scheme:
        known = ", ".join(f"{s}://" for row in GALLERY_STORES for s in row.schemes)
        raise DeenError(f"{redact_url(text)}: unknown gallery scheme {scheme}:// ({known} or a "
                        "file)")
    return GALLERY_STORES[0]


def open_store(location: str | Path, create: bool = True) -> GalleryStore:
    return store_format(location).open(str(location), create)


#: Engine names of export manifests, as messages name them.
_ENGINES = {"onnx": "ONNX", "openvino": "OpenVINO", "tensorrt": "TensorRT"}
#: How galleries written before :class:`ModelIdentity` recorded their model: the first 16
#: hex digits of the model file's SHA-256 (not its checkpoint's), variant, flip and a.
_LEGACY_ID = re.compile(r"[0-9a-f]{16}:[^:]+:flip=(True|False):a=.*")


@dataclass(frozen=True)
class ModelIdentity:
    """What a gallery's embeddings depend on: the weights (the checkpoint they come from, by
    SHA-256), the network variant and the embedding settings (flip, ``a``). ``described``
    names the model file and its precision in words, for messages; ``legacy`` is the id a
    gallery written before this identity recorded for the same file."""

    weights: str  # "sha256:HEX" of the source checkpoint; "random-init:seed=N"; or the file's
    variant: str
    flip: bool
    a: float | None
    described: str
    legacy: str = ""

    @property
    def key(self) -> str:
        """The identity as the store records it."""
        return f"weights={self.weights}:{self.variant}:flip={self.flip}:a={self.a}"

    def settings(self) -> str:
        """Variant and embedding settings in words: ``sysu, flip on, equal part weights``."""
        return f"{self.variant}, {EmbeddingConfig(self.flip, self.a).describe()}"


def model_id(path: Path | str, embedder: Embedder) -> ModelIdentity:
    """The :class:`ModelIdentity` of the model at ``path`` (a file, or a served model's
    ``triton://`` URL) that ``embedder`` runs: the checkpoint an export's manifest records
    as its source, or the checkpoint file itself."""
    fingerprint = embedder.fingerprint()
    file_digest = (hashlib.sha256(fingerprint.encode()).hexdigest() if fingerprint is not None
                   else sha256_file(path))
    config = embedder.config
    legacy = f"{file_digest[:16]}:{embedder.variant}:flip={config.flip}:a={config.a}"
    source = embedder.weights_source() or {}
    name = str(path) if fingerprint is not None else Path(path).name
    if source.get("sha256"):
        weights = f"sha256:{source['sha256']}"
        origin = (f"checkpoint {Path(source.get('checkpoint') or '?').name}, "
                  f"SHA-256 {source['sha256'][:12]}…")
    elif source.get("kind") == "random-init" and source.get("seed") is not None:
        weights = f"random-init:seed={source['seed']}"
        origin = f"a random-initialised DEEN, seed {source['seed']}"
    else:  # weights of unknown origin: the file is its own identity
        weights = f"file:{file_digest}"
        origin = f"weights of unknown origin, SHA-256 {file_digest[:12]}…"
    manifest = embedder.manifest
    if manifest is None:
        what = f"{name} (checkpoint, SHA-256 {source['sha256'][:12]}…)" \
            if source.get("sha256") else f"{name} ({origin})"
    else:
        engine = _ENGINES.get(manifest.get("engine", ""), manifest.get("engine", "model"))
        what = f"{name} ({engine} {manifest.get('precision', 'fp32')} export of {origin})"
    return ModelIdentity(weights, embedder.variant, config.flip, config.a, what, legacy)


def _refusal(location: str, stored: dict[str, str], model: ModelIdentity | str,
             dim: int) -> str | None:
    """Why the gallery at ``location`` (its ``stored`` meta) does not take ``model``; None
    when it does."""
    recorded = stored.get("model", "")
    same_dim = stored.get("dim") == str(dim)
    if not isinstance(model, ModelIdentity):
        if recorded == model and same_dim:
            return None
        return (f"{location}: gallery was built with model {recorded} (dim "
                f"{stored.get('dim')}), not this model ({model}, dim {dim}); use a new "
                "gallery for a new model")
    if _LEGACY_ID.fullmatch(recorded):
        if recorded == model.legacy and same_dim:
            return None
        return (f"{location}: gallery was built by an earlier deen, which recorded the model "
                f"file ({recorded}) rather than its checkpoint, and {model.described} is not "
                "that file; open it with the file it was built with, or rebuild it: enrol its "
                "people again into a new gallery")
    if recorded == model.key and same_dim:
        return None
    built = stored.get("described") or f"model {recorded}"
    why = ("another checkpoint" if not recorded.startswith(f"weights={model.weights}:")
           else "other embedding settings")
    return (f"{location}: gallery was built with {built}; not with {model.described}, "
            f"{model.settings()} ({why}); a gallery keeps to one checkpoint and its "
            "embedding settings: use a new gallery for this model")


@dataclass(frozen=True)
class Recognition:
    name: str
    similarity: float


class Gallery:
    """``Gallery(location, model_id, dim)``: a file path or a ``postgresql://`` URL; use as
    a context manager or call :meth:`close`."""

    def __init__(self, location: str | Path, model_id: ModelIdentity | str, dim: int,
                 create: bool = True) -> None:
        """``model_id``: the model's :class:`ModelIdentity` (:func:`model_id`), or the key
        a gallery records. ``create=False`` refuses a gallery that does not exist yet."""
        self.store = open_store(location, create)
        self.location, self.model_id, self.dim = self.store.location, model_id, dim
        try:
            entries = {"model": model_id.key if isinstance(model_id, ModelIdentity)
                       else model_id, "dim": str(dim)}
            if isinstance(model_id, ModelIdentity):
                entries["described"] = f"{model_id.described}, {model_id.settings()}"
            stored = self.store.meta() or self.store.claim(entries)
            refusal = _refusal(self.location, stored, model_id, dim)
            if refusal is not None:
                raise DeenError(refusal)
            self._names: list[str] = []
            self._means = np.zeros((0, dim))
            self._version = (-1, -1)
            self.refresh()
        except BaseException:
            self.store.close()
            raise

    @classmethod
    def open_existing(cls, location: str | Path) -> Gallery:
        """An existing gallery, with the model and size it records."""
        row = store_format(location)
        if row.kind is StoreKind.SQLITE:
            path = Path(location)
            if not path.is_file():
                raise DeenError(f"{path}: no such gallery file")
            probe: GalleryStore = SqliteStore(path, create=False, read_only=True)
        else:
            probe = row.open(str(location), False)
        try:
            meta = probe.meta()
        finally:
            probe.close()
        if "model" not in meta or "dim" not in meta:
            raise DeenError(f"{probe.location}: not a gallery database (no model recorded)")
        return cls(location, meta["model"], int(meta["dim"]))

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def refresh(self) -> bool:
        """Reload the enrolled people if rows were added or removed since the last load
        (by this process or any other); whether they were. Raises :class:`DeenError` if
        the store cannot be read, keeping the people already loaded."""
        version = self.store.version()
        if version == self._version:
            return False
        sums: dict[str, np.ndarray] = {}
        for name, blob in self.store.vectors():
            vector = np.frombuffer(blob, dtype=np.float32).astype(np.float64)
            sums[name] = sums.get(name, 0) + vector / max(np.linalg.norm(vector), 1e-12)
        self._names = sorted(sums)
        self._means = np.stack([sums[n] / np.linalg.norm(sums[n]) for n in self._names]) \
            if sums else np.zeros((0, self.dim))
        self._version = version
        return True

    def add(self, name: str, modality: Modality, embeddings: np.ndarray,
            sources: list[str]) -> int:
        """Enrol ``embeddings`` (N×dim, one per image in ``sources``) under ``name``, in one
        transaction."""
        if not name.strip():
            raise DeenError("gallery: the identity name is empty")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise DeenError(f"gallery: expected N×{self.dim} embeddings, got {embeddings.shape}")
        now = time.time()
        count = self.store.insert(
            (name, int(modality), src, vec.tobytes(), now)
            for vec, src in zip(embeddings, sources, strict=True))
        self.refresh()
        return count

    def remove(self, name: str) -> int:
        count = self.store.delete(name)
        self.refresh()
        return count

    def identities(self) -> list[tuple[str, int, int]]:
        """(name, visible images, infrared images) for each enrolled name."""
        return self.store.identities()

    def recognise(self, vector: np.ndarray, threshold: float = DEFAULT_GALLERY_THRESHOLD
                  ) -> Recognition | None:
        """The enrolled name most similar to a unit ``vector``, if at least ``threshold``."""
        if not self._names:
            return None
        similarity = self._means @ vector
        best = int(np.argmax(similarity))
        if similarity[best] < threshold:
            return None
        return Recognition(self._names[best], float(similarity[best]))
