"""A gallery shared by a site's boxes, in a real PostgreSQL server made by initdb in a
temporary folder and started on a loopback port: an enrolment made while two ``deen run``
processes are live is recognised by both within 5 s; a writer killed mid-enrolment leaves
no partial person; another model's gallery, a wrong password, a server that is not there
and a malformed URL each get one line; a server that goes away mid-run is a counted
outage and the run goes on."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_person_images
from servers import Postgres, free_port

from deen.backends import open_embedder
from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.gallery import Gallery, PostgresStore, StoreKind, store_format
from deen.runtime.live import enrol, model_id
from deen.scenes import write_stream_pair

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def postgres():
    with Postgres() as server:
        yield server


@pytest.fixture
def database(postgres, request):
    """A fresh database per test, so tests do not see each other's galleries."""
    import psycopg

    name = "t_" + request.node.name[:40].lower().replace("-", "_")
    with psycopg.connect(postgres.url(), autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {name}")
    return postgres.url(database=name)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=4,
                             fps=10, seed=2)


def _address(url: str) -> str:
    """``url`` without its password, as a command line should give it."""
    return re.sub(r"://([^:@/]+):[^@]*@", r"://\1@", url)


def _deen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


def test_a_postgres_gallery_enrols_lists_removes_and_keeps_to_its_model(database) -> None:
    assert store_format(database).kind is StoreKind.POSTGRES
    rng = np.random.default_rng(0)
    with Gallery(database, "model-a", 4) as gallery:
        assert gallery.add("alice", Modality.VISIBLE, rng.normal(size=(2, 4)), ["a", "b"]) == 2
        gallery.add("alice", Modality.INFRARED, rng.normal(size=(1, 4)), ["c"])
        vector = rng.normal(size=4)
        gallery.add("bob", Modality.VISIBLE, vector[None], ["d"])
        assert gallery.recognise(vector / np.linalg.norm(vector)).name == "bob"
        with Gallery.open_existing(database) as other:  # another box on the same database
            assert other.identities() == [("alice", 2, 1), ("bob", 1, 0)]
            assert other.remove("bob") == 1
        assert gallery.refresh() and gallery.identities() == [("alice", 2, 1)]
        assert not gallery.refresh()  # nothing changed since
    with pytest.raises(DeenError, match=r"gallery was built with model model-a \(dim 4\)"):
        Gallery(database, "model-b", 4)


def test_bad_database_targets_get_one_line(postgres, database, small_model) -> None:
    with Gallery(database, "another-model", 8):
        pass
    cases = [
        (postgres.address(), "wrong", "password authentication failed"),
        (f"postgresql://deen@127.0.0.1:{free_port()}/postgres", None, "cannot connect"),
        ("postgresql://deen@127.0.0.1:port/postgres", None, "cannot connect"),
        (postgres.address("nothere"), None, 'database "nothere" does not exist'),
    ]
    for url, password, problem in cases:
        done = _deen("gallery", "list", "--gallery", url, timeout=60,
                     env=postgres.environ(password))
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert problem in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "wrong" not in done.stderr  # the password is never printed
    done = _deen("run", "--rgb", "x.mp4", "--ir", "y.mp4", "--model", str(small_model),
                 "--device", "cpu", "--gallery", _address(database), timeout=60,
                 env=postgres.environ())
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "gallery was built with model another-model" in done.stderr


def test_a_writer_killed_mid_enrolment_leaves_no_partial_person(database) -> None:
    """A writer enrols 200-image identities in a loop and is SIGKILLed while it writes:
    every enrolment it reported is there, and none is half there."""
    writer = textwrap.dedent(f"""
        import numpy as np
        from deen.modality import Modality
        from deen.runtime.gallery import Gallery
        g = Gallery({database!r}, "m", 8)
        rng = np.random.default_rng(0)
        for i in range(100000):
            g.add(f"person{{i}}", Modality.VISIBLE, rng.normal(size=(200, 8)),
                  [str(k) for k in range(200)])
            print(i, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE,
                               text=True)
    reported = -1
    for line in process.stdout:
        reported = int(line)
        if reported >= 5:
            break
    assert reported >= 5, "the writer failed before enrolling anyone"
    time.sleep(0.03)  # well inside the next enrolment's transaction
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(0.5)  # the server notices the dropped connection and rolls back
    with Gallery.open_existing(database) as gallery:
        counts = {name: v for name, v, _ in gallery.identities()}
    assert all(f"person{i}" in counts for i in range(reported + 1))
    assert set(counts.values()) == {200}, counts  # all of an enrolment, or none of it


def _started(log: Path) -> bool:
    return log.exists() and '"track_started"' in log.read_text()


@pytest.mark.serial  # asserts timing: runs alone (scripts/test.sh)
def test_two_live_runs_recognise_a_person_enrolled_elsewhere_and_ride_out_an_outage(
        postgres, database, scene, small_model, tmp_path) -> None:
    embedder = open_embedder(small_model, device="cpu")
    Gallery(database, model_id(small_model, embedder), embedder.dim).close()  # empty
    logs = [tmp_path / f"box{i}.jsonl" for i in range(2)]
    # Two boxes share this machine's cores; the password comes from the environment.
    one_core = {**postgres.environ(), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
         str(scene.infrared), "--loop", "--model", str(small_model), "--device", "cpu",
         "--detector", str(scene.boxes), "--duration", "120", "--set",
         "outputs.status_every_s=0", "--gallery", _address(database), "--set",
         "gallery.threshold=-1", "--events", str(log)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=one_core) for log in logs]
    try:
        deadline = time.monotonic() + 90
        while not all(_started(log) for log in logs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_started(log) for log in logs)
        folder = write_person_images(tmp_path / "alice", 3, seed=7)
        enrol(database, "alice", folder, Modality.VISIBLE, embedder, small_model)
        enrolled = time.time()  # committed: every box may now see it
        deadline = time.monotonic() + 10
        seen: dict[int, float] = {}
        while len(seen) < 2 and time.monotonic() < deadline:
            for index, log in enumerate(logs):
                for line in log.read_text().splitlines():
                    record = json.loads(line)
                    if record["event"] == "recognised" and record["name"] == "alice":
                        seen.setdefault(index, record["time"] - enrolled)
            time.sleep(0.1)
        postgres.stop()  # the database goes away mid-run …
        time.sleep(2.5)
        postgres.start()  # … and comes back
        time.sleep(2)  # the runs go on with it
        for run in runs:
            run.send_signal(signal.SIGINT)  # an operator's Ctrl-C: each run ends cleanly
        results = [run.communicate(timeout=60) for run in runs]
    finally:
        for run in runs:
            run.kill()
    print(f"enrolment to recognition: {', '.join(f'{s:.2f} s' for s in seen.values())}")
    assert sorted(seen) == [0, 1] and all(0 <= s < 5 for s in seen.values()), seen
    for run, (_, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr
        assert "gallery outage 1" in stderr and "Traceback" not in stderr, stderr


def test_the_store_reconnects_after_the_server_comes_back(postgres, database) -> None:
    store = PostgresStore(database)
    try:
        assert store.version() == (0, 0)
        postgres.stop()
        with pytest.raises(DeenError, match=r"went away|cannot connect"):
            store.version()
        postgres.start()
        assert store.version() == (0, 0)
    finally:
        store.close()
