"""Secure defaults, seen from outside the process: by default nothing listens beyond loopback,
and a server told to listen on every interface says in its log what it leaves open."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import pytest

from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
_LISTEN = "0A"  # TCP state in /proc/net/tcp


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                address, port = fields[1].split(":")
                found.add((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    """/proc's hex address (32-bit words in host, little-endian, order) as IPv4 where it is
    one."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    # gRPC listens on IPv6 sockets: 127.0.0.1 shows as ::ffff:127.0.0.1.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def test_nothing_listens_beyond_loopback_by_default(server: RunningServer) -> None:
    listening = listening_addresses(server.process.pid)
    ports = {port for _, port in listening}
    assert {server.http_port, server.ports["gRPC"], server.ports["metrics"]} <= ports
    assert all(ipaddress.ip_address(address).is_loopback for address, _ in listening), listening
    assert "beyond loopback" not in server.log_text()


def test_listening_on_every_interface_warns_of_what_is_open(tmp_path: Path) -> None:
    with running_server(tmp_path, "--host", "0.0.0.0", "--grpc-port", "0") as server:
        assert ("0.0.0.0", server.http_port) in listening_addresses(server.process.pid)
        warnings = [line for line in server.log if "beyond loopback" in line]
    assert len(warnings) == 2
    assert "WARNING" in warnings[0]
    assert "the HTTP port is plaintext (--http-use-ssl)" in warnings[0]
    assert (
        "can use model-repository, trace and logging (--management-token restricts them)"
        in warnings[1]
    )
