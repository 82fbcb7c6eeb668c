"""A real PgBouncer in transaction mode in front of the test PostgreSQL (Debian's ``pgbouncer``,
which ``.ci/run`` installs). Any database name is passed through (``* =``), so each xdist
worker's database is reachable as it is directly."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.servers import free_port, wait_for

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _run_as(host: str) -> str | None:
    """PgBouncer refuses to run as root: as root, run it as the owner of the server's socket
    directory (the embedded server's data dir is that user's alone), else as nobody."""
    if os.getuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


class PgBouncer:
    """``pgbouncer`` on a free port, pooling in transaction mode toward ``server_url``."""

    def __init__(self, server_url: str) -> None:
        info = conninfo_to_dict(server_url)
        host = str(info.get("host") or "127.0.0.1")
        self.user = str(info.get("user") or "postgres")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="qsup-pgbouncer-"))
        self.dir.chmod(0o777)  # written by the user PgBouncer runs as
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        target = f"host={host} port={info.get('port') or 5432} user={self.user}"
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = {target}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"admin_users = {self.user}\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 20\n"
            "max_client_conn = 500\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        user = _run_as(host)
        command = [BINARY, *(["-u", user] if user else []), str(self.dir / "pgbouncer.ini")]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self._answers, 10, what="PgBouncer to accept connections")

    def url(self, dbname: str) -> str:
        return make_conninfo(host="127.0.0.1", port=str(self.port), user=self.user, dbname=dbname)

    def client_names(self) -> set[str]:
        """The application names of the pooler's clients (its admin console's SHOW CLIENTS,
        which speaks only the simple query protocol)."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True) as conn:
            result = conn.pgconn.exec_(b"SHOW CLIENTS")
            fields = [result.fname(i) for i in range(result.nfields)]
            column = fields.index(b"application_name")
            names = (result.get_value(row, column) for row in range(result.ntuples))
            return {name.decode() for name in names if name}

    def _answers(self) -> bool:
        assert self.proc.poll() is None, f"pgbouncer exited: {self._stderr()}"
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.05)
            return False

    def _stderr(self) -> str:
        log = self.dir / "pgbouncer.log"
        return (self.proc.stderr.read().decode() if self.proc.stderr else "") + (
            log.read_text() if log.exists() else ""
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
