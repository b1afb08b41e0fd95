"""port_order_key orders sockets exactly as sort_sockets does, for the port columns."""

from __future__ import annotations

import random

import pytest

from portmon.collect.fake import synthetic_snapshot
from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Socket
from portmon.query.sorting import PORT_COLUMNS, port_order_key, sort_sockets


def _tied_sockets() -> list[Socket]:
    """Many rows the ports leave tied: one server port, clients reusing source ports, a few peers."""
    rng = random.Random(7)
    out = []
    for inode in range(1, 3000):
        peer = rng.choice(["127.0.0.1", "127.0.0.2", "10.0.0.9", "::1", None])
        out.append(
            Socket(
                proto=rng.choice(["tcp", "udp"]),
                family=6 if peer == "::1" else 4,
                local_addr=rng.choice(["127.0.0.1", "0.0.0.0", "::"]),
                local_port=rng.choice([80, 443, 8080, 40000, 65535, 0]),
                remote_addr=peer,
                remote_port=None if peer is None else rng.choice([50000, 50001, 65535, 0]),
                state=rng.choice([ESTABLISHED, TIME_WAIT, LISTEN, None]),
                inode=inode if rng.random() < 0.8 else 0,
                seq=inode,
            )
        )
    return out


@pytest.mark.parametrize("column", sorted(PORT_COLUMNS))
@pytest.mark.parametrize("descending", [False, True])
def test_the_key_gives_sort_sockets_order(column: str, descending: bool) -> None:
    for sockets in (_tied_sockets(), list(synthetic_snapshot(5000, seed=2).sockets)):
        random.Random(1).shuffle(sockets)
        assert sorted(sockets, key=port_order_key(column, descending)) == sort_sockets(sockets, column, descending)


def test_only_port_columns() -> None:
    with pytest.raises(ValueError):
        port_order_key("state")
