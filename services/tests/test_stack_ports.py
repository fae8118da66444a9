"""The local stack refuses to start on a port another server holds (its readiness check would lie)."""

from __future__ import annotations

import socket

import pytest
from mlops_dev.stack import Ports, Stack


def test_busy_port_is_named_before_anything_starts(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        ports = Ports.free()
        ports.postgres = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match=rf"127.0.0.1:{ports.postgres} \(postgres\) is already taken"):
            Stack(tmp_path / "state", ports).up()
    assert not (tmp_path / "state" / "postgres").exists()
