"""Real `valkey-server` processes on free loopback ports, for the tests that need Valkey.

Every server runs in a folder of its own with its whole configuration on the command line
(no config file but the sentinel's, which Sentinel rewrites), its stdout and stderr in
`<folder>/valkey.log`, and is stopped with SIGTERM, then SIGKILL after `STOP_DEADLINE`.
Nothing here is skipped: a missing binary fails the test and says that `./dev test` installs
it. Imported by the tests beside it and below it as `from valkey_servers import ...` (pytest
puts this folder on `sys.path` when it loads `tests/integration/conftest.py`).

- `ValkeyServer`: standalone, optionally with `requirepass`, TLS (a CA and a server
  certificate made by `make_tls_files`), appendonly with `appendfsync always`; `stop()`,
  `start()` again on the same port and folder, `kill()`, `pause(seconds)`.
- `ValkeyCluster`: three `--cluster-enabled yes` primaries joined by `valkey-cli --cluster
  create`, all 16384 slots covered.
- `ValkeySentinel`: one primary and one Sentinel monitoring it as `master_name`.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import valkey

HOST = "127.0.0.1"
START_DEADLINE = 10.0
STOP_DEADLINE = 5.0
CLUSTER_DEADLINE = 20.0
START_ATTEMPTS = 3
CLUSTER_BUS_OFFSET = 10000
INSTALL_HINT = (
    "is not installed: `./dev test` installs valkey-server and valkey-tools"
    " (on Debian 12 from bookworm-backports, on Debian 13 from main)"
)


def require_binary(name: str) -> str:
    """The path of `name` (valkey-server, valkey-cli, openssl), or the test fails saying so."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} {INSTALL_HINT}", pytrace=False)
    return path


def free_port(*, with_cluster_bus: bool = False) -> int:
    """A loopback port free right now (and, for a cluster node, port + 10000 as well).

    Another process can take it before the server binds it: `ValkeyServer.start` retries
    on "Address already in use".
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        if not with_cluster_bus:
            return port
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port
    raise AssertionError("no free loopback port pair found")


# ------------------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it (PEM files)."""

    ca_cert: Path
    cert: Path
    key: Path


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cronium-runtime test
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_tls_files(folder: Path) -> TlsFiles:
    """A fresh CA and server certificate (P-256, valid two days) made with the openssl tool.

    The `cryptography` package is not a dependency of the project, so the command-line tool
    (which `./dev test` installs when missing) makes them.
    """
    openssl = require_binary("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG, encoding="utf-8")
    files = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    ca_key, csr = folder / "ca.key", folder / "server.csr"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", "-config", config, "-extensions", "ca_ext", *new_key,
         "-keyout", ca_key, "-out", files.ca_cert, "-days", "2",
         "-subj", "/CN=cronium-runtime test CA"],
        [openssl, "req", "-new", "-config", config, *new_key,
         "-keyout", files.key, "-out", csr, "-subj", "/CN=localhost"],
        [openssl, "x509", "-req", "-in", csr, "-CA", files.ca_cert, "-CAkey", ca_key,
         "-set_serial", str(secrets.randbits(63)), "-days", "2",
         "-extfile", config, "-extensions", "server_ext", "-out", files.cert],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(
            [str(part) for part in step],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"openssl failed: {' '.join(map(str, step))}\n{done.stderr}")
    return files


# ------------------------------------------------------------------------------ processes


class ServerExited(Exception):
    def __init__(self, what: str, returncode: int, log: str) -> None:
        super().__init__(f"{what} exited with status {returncode}; its log:\n{log[-4000:]}")
        self.log = log


class _Process:
    """One valkey-server process: output to `<folder>/valkey.log`, SIGTERM then SIGKILL."""

    what = "valkey-server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "valkey.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where the current process's output begins in the log

    @property
    def log(self) -> str:
        """Everything every start of this server wrote (a restart appends)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def current_log(self) -> str:
        """What the current (or last) process wrote."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _arguments(self) -> list[str]:
        raise NotImplementedError

    def _choose_ports(self) -> None:
        """Pick new free ports (called again when a start lost its port to another process)."""
        raise NotImplementedError

    def _ping(self) -> bool:
        """Whether the server answers and is ready; `_is_ours` first tells that it is ours."""
        raise NotImplementedError

    def _is_ours(self, client: valkey.Valkey) -> bool:
        """Whether the process answering is this one, not another test's on a port we lost."""
        assert self.process is not None
        return int(client.info("server")["process_id"]) == self.process.pid

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                [require_binary("valkey-server"), *self._arguments()],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerExited(self.what, self.process.returncode, self.current_log)
            with contextlib.suppress(valkey.ValkeyError, OSError):
                if self._ping():
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{self.what} did not answer within {START_DEADLINE}s; its log:\n{self.current_log}"
        )

    def _start(self, *, fixed_ports: bool) -> None:
        if self.running:
            return
        for attempt in range(START_ATTEMPTS):
            if not fixed_ports and attempt > 0:
                self._choose_ports()
            self._spawn()
            try:
                self._wait_until_ready()
            except ServerExited as exited:
                self.process = None
                # The free port was taken between the probe and the bind: try others.
                taken = "address already in use" in exited.log.lower()
                if taken and not fixed_ports and attempt < START_ATTEMPTS - 1:
                    continue
                pytest.fail(str(exited))
            return

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `STOP_DEADLINE`; idempotent."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_DEADLINE)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write; as a crash or an OOM kill."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)
        self.process = None


class ValkeyServer(_Process):
    """A standalone server on free loopback ports in `folder`.

    `tls=True` adds a TLS port beside the plain one (`tls_only=True`: the TLS port alone,
    plain TCP off with `--port 0`); `tls_files` holds the CA to trust. `appendonly=True`
    writes every command to the AOF with `appendfsync always`, so `stop()` and `start()`
    (same port, same folder) keep the data; so does `kill()` then `start()`.
    """

    def __init__(
        self,
        folder: Path,
        *,
        password: str | None = None,
        tls: bool = False,
        tls_only: bool = False,
        appendonly: bool = False,
        cluster: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(folder)
        self.password = password
        self.tls = tls or tls_only
        self.tls_only = tls_only
        self.appendonly = appendonly
        self.cluster = cluster
        self.extra_args = list(extra_args)
        self.tls_files: TlsFiles | None = make_tls_files(folder / "tls") if self.tls else None
        self.port: int | None = None
        self.tls_port: int | None = None
        self._started_once = False
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.port = None if self.tls_only else free_port(with_cluster_bus=self.cluster)
        self.tls_port = free_port() if self.tls else None

    @property
    def client_port(self) -> int:
        """The TLS port for a TLS-only server, else the plain one."""
        port = self.tls_port if self.tls_only else self.port
        assert port is not None
        return port

    def _arguments(self) -> list[str]:
        args = [
            "--port", str(self.port or 0),
            "--bind", HOST,
            "--dir", str(self.folder),
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls_files is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self.tls_files.cert),
                "--tls-key-file", str(self.tls_files.key),
                "--tls-ca-cert-file", str(self.tls_files.ca_cert),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        return args + self.extra_args

    def client(self, *, timeout: float = 2.0, **options: Any) -> valkey.Valkey:
        """A synchronous client (for set-up and checks), with TLS and password as needed."""
        if self.tls_only:
            assert self.tls_files is not None
            options.setdefault("ssl", True)
            options.setdefault("ssl_ca_certs", str(self.tls_files.ca_cert))
        return valkey.Valkey(
            host=HOST,
            port=self.client_port,
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            **options,
        )

    def _ping(self) -> bool:
        with self.client(timeout=1.0) as client:
            return self._is_ours(client) and bool(client.ping())

    def start(self) -> ValkeyServer:
        """Start (or start again, on the same ports and folder) and wait for PING."""
        self._start(fixed_ports=self._started_once)
        self._started_once = True
        return self

    def url(self, *, db: int = 0, tls: bool | None = None, password: bool = True) -> str:
        """`valkey://` (or `valkeys://` to the TLS port), with the password and db as set."""
        use_tls = self.tls_only if tls is None else tls
        port = self.tls_port if use_tls else self.port
        if port is None:
            raise ValueError("this server has no such port")
        scheme = "valkeys" if use_tls else "valkey"
        auth = f":{quote(self.password, safe='')}@" if password and self.password else ""
        path = f"/{db}" if db else ""
        return f"{scheme}://{auth}{HOST}:{port}{path}"

    def pause(self, seconds: float) -> None:
        """`CLIENT PAUSE <ms> ALL`: every command from every client waits, connections stay.

        Returns at once. In Valkey 8.0 `CLIENT UNPAUSE` is itself held by such a pause, so
        there is no ending it early: choose a short one. A new connection's handshake (the
        client's `CLIENT SETINFO`) waits too, so it times out like any command.
        """
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", str(max(1, round(seconds * 1000))), "ALL")

    def __repr__(self) -> str:
        return f"ValkeyServer(port={self.port}, tls_port={self.tls_port}, folder={self.folder})"


class ValkeyCluster:
    """Three cluster-enabled primaries on loopback, slots split by `valkey-cli --cluster create`."""

    def __init__(self, folder: Path, *, size: int = 3) -> None:
        self.folder = folder
        self.nodes = [ValkeyServer(folder / f"node-{index}", cluster=True) for index in range(size)]

    @property
    def ports(self) -> list[int]:
        return [node.client_port for node in self.nodes]

    def start(self) -> ValkeyCluster:
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        cli = require_binary("valkey-cli")
        done = subprocess.run(
            [
                cli, "--cluster", "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_DEADLINE,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"valkey-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + CLUSTER_DEADLINE
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            for node in self.nodes:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                states[node.client_port] = text
            if all("cluster_state:ok" in text for text in states.values()):
                return
            time.sleep(0.1)
        pytest.fail(f"the cluster did not reach cluster_state:ok in {CLUSTER_DEADLINE}s: {states}")

    def url(self, index: int = 0) -> str:
        """A seed node's URL; the cluster client finds the others."""
        return self.nodes[index].url()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class _SentinelProcess(_Process):
    what = "valkey-server --sentinel"

    def __init__(self, folder: Path, master_name: str, primary: ValkeyServer) -> None:
        super().__init__(folder)
        self.master_name = master_name
        self.primary = primary
        self.config = folder / "sentinel.conf"
        self.port = free_port()

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _arguments(self) -> list[str]:
        # Sentinel rewrites its configuration file, so it is written anew for each start.
        self.config.write_text(
            f"sentinel monitor {self.master_name} {HOST} {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
            f"sentinel failover-timeout {self.master_name} 5000\n",
            encoding="utf-8",
        )
        return [
            str(self.config), "--sentinel",
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.folder),
            "--daemonize", "no",
        ]  # fmt: skip

    def client(self, *, timeout: float = 2.0) -> valkey.Valkey:
        return valkey.Valkey(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def _ping(self) -> bool:
        """Up once it names the primary and has heard from it (no `disconnected`, a run id)."""
        with self.client(timeout=1.0) as client:
            if not self._is_ours(client):
                return False
            address = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
            if not address or int(address[1]) != self.primary.port:
                return False
            state = client.execute_command("SENTINEL", "MASTER", self.master_name)
        fields = dict(zip(state[::2], state[1::2], strict=True))
        flags = fields.get(b"flags", b"").decode()
        return flags == "master" and bool(fields.get(b"runid"))

    def start(self) -> None:
        self._start(fixed_ports=False)


class ValkeySentinel:
    """One primary and one Sentinel watching it as `master_name` (quorum 1)."""

    def __init__(self, folder: Path, *, master_name: str = "mymaster") -> None:
        self.master_name = master_name
        self.primary = ValkeyServer(folder / "primary")
        self.sentinel = _SentinelProcess(folder / "sentinel", master_name, self.primary)

    @property
    def sentinel_address(self) -> tuple[str, int]:
        return (HOST, self.sentinel.port)

    def start(self) -> ValkeySentinel:
        try:
            self.primary.start()
            self.sentinel.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.sentinel.stop()
        self.primary.stop()
