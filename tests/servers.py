"""Real servers for the site tests, started on loopback ports in temporary folders.

Each class starts the real program (Debian's packages, installed by ``scripts/setup.sh
--dev``), waits until it accepts connections, and can be stopped and started again on the
same port and data, as an outage would. :func:`require` skips a test with the reason when
the program is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


def require(program: str, package: str) -> str:
    """The program's path; skips the test when it is not installed."""
    path = shutil.which(program) or next(
        (str(p) for p in Path("/usr/sbin").glob(program) if p.is_file()), None)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package {package}; "
                    "scripts/setup.sh --dev installs it)")
    return path


class Mosquitto:
    """A Mosquitto broker on a loopback port, persisting sessions in ``folder`` so that a
    subscriber's queued messages survive a restart (as a site's broker would be set up)."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.program = require("mosquitto", "mosquitto")
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {folder}/", "autosave_interval 1"]
        if users:
            passwords = folder / "passwords"
            passwords.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            subprocess.run([require("mosquitto_passwd", "mosquitto"), "-U", str(passwords)],
                           check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:  # else it drops to its own user, who cannot write in tmp_path
            lines.append("user root")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([self.program, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / "log", "a"))  # noqa: SIM115
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGKILL)


def _postgres_bin(program: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"))
    if found:
        return str(found[-1])
    return require(program, "postgresql")


class Postgres:
    """A PostgreSQL server made by ``initdb`` in a temporary folder, on a loopback port.

    Its superuser ``deen`` has ``password``, which loopback TCP connections must give
    (SCRAM). As root the server runs as Debian's ``postgres`` user, which owns the folder
    (PostgreSQL refuses to run as root)."""

    def __init__(self, password: str = "deen-test") -> None:
        import tempfile

        self.initdb, self.program = _postgres_bin("initdb"), _postgres_bin("postgres")
        self.password, self.port = password, free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="deen-pg-"))
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run the server")
            self.user_prefix = ["runuser", "-u", "postgres", "--"]
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        secret = self.folder / "pwfile"
        secret.write_text(password + "\n")
        if self.user_prefix:
            os.chown(secret, owner.pw_uid, owner.pw_gid)
        self.data = self.folder / "data"
        subprocess.run([*self.user_prefix, self.initdb, "-D", str(self.data), "-U", "deen",
                        f"--pwfile={secret}", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        self.process: subprocess.Popen | None = None

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        password = self.password if password is None else password
        return f"postgresql://deen:{password}@127.0.0.1:{self.port}/{database}"

    def address(self, database: str = "postgres") -> str:
        """The URL without the password, for command lines (which take it from
        ``$PGPASSWORD``, as :meth:`environ` sets it, or ``~/.pgpass``)."""
        return f"postgresql://deen@127.0.0.1:{self.port}/{database}"

    def environ(self, password: str | None = None) -> dict[str, str]:
        """This process's environment with ``$PGPASSWORD`` (default: the right one)."""
        return {**os.environ, "PGPASSWORD": self.password if password is None else password}

    def start(self) -> Postgres:
        self.process = subprocess.Popen(
            [*self.user_prefix, self.program, "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.folder), "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 20)
        import psycopg

        deadline = time.monotonic() + 20
        while True:  # the port opens before the server accepts sessions
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: PostgreSQL's fast shutdown (clients are disconnected)."""
        if self.process is not None and self.process.poll() is None:
            pid_file = self.data / "postmaster.pid"  # the server itself, not runuser
            pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else \
                self.process.pid
            os.kill(pid, sig)
            self.process.wait(timeout=20)
        self.process = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
