"""Enrolled identities in a SQLite file, so tracks in either stream can be named.

Each enrolment is one row per image embedding (name, modality, vector) written in a single
transaction: a killed process leaves either all of an enrolment or none of it (SQLite's
journal; ``synchronous=FULL`` makes a committed row survive a power cut too). A gallery
belongs to one model: embeddings of different models are not comparable, so the file records
the model's fingerprint and refuses another.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deen.errors import DeenError
from deen.modality import Modality

DEFAULT_GALLERY_THRESHOLD = 0.6

_SCHEMA = """
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


@dataclass(frozen=True)
class Recognition:
    name: str
    similarity: float


class Gallery:
    """``Gallery(path, model_id, dim)``; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, model_id: str, dim: int, create: bool = True) -> None:
        """``create=False`` refuses a file that is not there (a run reads a gallery that
        ``deen gallery add`` made; a mistyped path must not become an empty gallery)."""
        self.path, self.model_id, self.dim = Path(path), model_id, dim
        if not create and not self.path.is_file():
            raise DeenError(f"{self.path}: no such gallery file (deen gallery add creates one)")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DeenError(f"{self.path}: not a usable gallery database ({exc})") from None
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            with self._transaction():
                self.db.executemany("INSERT INTO meta VALUES (?, ?)",
                                    [("model", model_id), ("dim", str(dim))])
        elif stored.get("model") != model_id or int(stored.get("dim", -1)) != dim:
            raise DeenError(f"{self.path}: gallery was built with model {stored.get('model')} "
                            f"(dim {stored.get('dim')}), not this model ({model_id}, dim {dim}); "
                            "use a new gallery file for a new model")
        self._names: list[str] = []
        self._means = np.zeros((0, dim))
        self._load()

    @classmethod
    def open_existing(cls, path: Path) -> Gallery:
        """An existing gallery file, with the model and size it records."""
        path = Path(path)
        if not path.is_file():
            raise DeenError(f"{path}: no such gallery file")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise DeenError(f"{path}: not a gallery database ({exc})") from None
        if "model" not in meta or "dim" not in meta:
            raise DeenError(f"{path}: not a gallery database (no model recorded)")
        return cls(path, meta["model"], int(meta["dim"]))

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _transaction(self) -> sqlite3.Connection:
        return _Transaction(self.db)

    def _load(self) -> None:
        sums: dict[str, np.ndarray] = {}
        for name, blob in self.db.execute("SELECT name, vector FROM embeddings ORDER BY id"):
            vector = np.frombuffer(blob, dtype=np.float32).astype(np.float64)
            sums[name] = sums.get(name, 0) + vector / max(np.linalg.norm(vector), 1e-12)
        self._names = sorted(sums)
        self._means = np.stack([sums[n] / np.linalg.norm(sums[n]) for n in self._names]) \
            if sums else np.zeros((0, self.dim))

    def add(self, name: str, modality: Modality, embeddings: np.ndarray,
            sources: list[str]) -> int:
        """Enrol ``embeddings`` (N×dim, one per image in ``sources``) under ``name``."""
        if not name.strip():
            raise DeenError("gallery: the identity name is empty")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise DeenError(f"gallery: expected N×{self.dim} embeddings, got {embeddings.shape}")
        now = time.time()
        with self._transaction():
            self.db.executemany(
                "INSERT INTO embeddings (name, modality, source, vector, added) "
                "VALUES (?, ?, ?, ?, ?)",
                [(name, int(modality), src, vec.tobytes(), now)
                 for vec, src in zip(embeddings, sources, strict=True)])
        self._load()
        return len(embeddings)

    def remove(self, name: str) -> int:
        with self._transaction():
            count = self.db.execute("DELETE FROM embeddings WHERE name = ?", (name,)).rowcount
        self._load()
        return count

    def identities(self) -> list[tuple[str, int, int]]:
        """(name, visible images, infrared images) for each enrolled name."""
        rows = self.db.execute(
            "SELECT name, SUM(modality = 0), SUM(modality = 1) FROM embeddings "
            "GROUP BY name ORDER BY name").fetchall()
        return [(n, int(v), int(r)) for n, v, r in rows]

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


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")
