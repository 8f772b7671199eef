"""Redis set-ups the client tests start for themselves: a TLS CA, a Sentinel, a Redis Cluster.

The servers themselves are :class:`tests.conftest.PrivateRedis`; what is here makes them speak TLS,
watches one with a Sentinel, or joins three into a cluster.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

import pytest

#: Slots each node of a three-node cluster serves (Redis Cluster has 16384).
THIRDS = [(0, 5460), (5461, 10922), (10923, 16383)]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    """Polls ``condition()`` until it is true; fails the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.02)


@dataclass(frozen=True)
class TlsFiles:
    """A CA of a test's own and a certificate it signed for 127.0.0.1 / localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Writes a fresh CA and a server certificate for 127.0.0.1 signed by it into ``directory``."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=1)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("kf-test CA")).issuer_name(name("kf-test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                          x509.DNSName("localhost")]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(pem_key(server_key))
    return files


def cluster_options(directory: Path, port: int) -> List[str]:
    """The redis-server arguments of a cluster node on ``port`` (its bus on a free port of its own)."""
    return ["--cluster-enabled", "yes", "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
            "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000"]


def form_cluster(nodes: Sequence[Any]) -> None:
    """Joins three started cluster nodes (``PrivateRedis``) into one cluster serving every slot.

    Each node takes a third of the slots and meets the others, and the
    call returns once every node says the cluster is ``ok``.
    """
    clients = [node.client() for node in nodes]
    for connection, (first, last) in zip(clients, THIRDS):
        connection.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
    # Every node meets every other, so none waits for gossip to learn of the third.
    for connection in clients:
        for node in nodes:
            bus = node.options[node.options.index("--cluster-port") + 1]
            connection.execute_command("CLUSTER MEET", "127.0.0.1", node.port, bus)

    def ready() -> bool:
        infos = [connection.execute_command("CLUSTER INFO") for connection in clients]
        return all(_field(info, "cluster_state") == "ok" and _field(info, "cluster_known_nodes") == str(len(nodes))
                   for info in infos)
    wait_until(ready, "the three nodes forming a cluster")


def _field(info: Any, name: str) -> str:
    text = info.decode() if isinstance(info, bytes) else info
    if isinstance(text, dict):
        return str(text.get(name, ""))
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


class PrivateSentinel:
    """A Redis Sentinel of one test, on a free port, watching the master ``127.0.0.1:master_port`` as ``name``."""

    def __init__(self, directory: Path, master_port: int, name: str = "mymaster"):
        self.port = free_port()
        self.name = name
        self.config = directory / f"sentinel-{self.port}.conf"
        # The Sentinel rewrites its file as it learns; it must be its own and writable.
        self.config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                               f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
                               f"sentinel down-after-milliseconds {name} 2000\n"
                               f"sentinel failover-timeout {name} 10000\n", encoding="utf-8")
        self.process: Optional[subprocess.Popen] = None

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=1)

    def start(self) -> None:
        self.process = subprocess.Popen([shutil.which("redis-server"), str(self.config), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, f"the Sentinel on port {self.port} answering", timeout=5)

    def _answers(self) -> bool:
        import redis
        try:
            return self.client().sentinel_get_master_addr_by_name(self.name) is not None
        except redis.exceptions.RedisError:
            return False

    def terminate(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
