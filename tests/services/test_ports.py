"""Whose a port is, read from the kernel's socket tables: parsed from recorded tables (no
I/O), and this machine's own table read with a real listening socket in it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from hpcgate.services.ports import Listener, listeners, on_this_machine, parse, stranger

#: /proc/net/tcp with a listener on 0.0.0.0:8080 (uid 1001), one on 127.0.0.1:20001 (uid
#: 1002), an established connection from port 20001 (not a listener), and a torn line.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 657 1
   1: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 4454 1
   2: 0100007F:4E21 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1003        0 4455 1
   3: 0100007F:zz
"""
#: /proc/net/tcp6 with a listener on [::]:20001 (uid 1003).
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4E21 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 9 1
"""  # noqa: E501


def test_only_listening_sockets_are_read_with_their_port_and_owner() -> None:
    assert parse(TCP) == [Listener(8080, 1001), Listener(20001, 1002)]
    assert parse(TCP6) == [Listener(20001, 1003)]


def test_a_port_is_the_accounts_only_if_every_listener_on_it_is() -> None:
    found = parse(TCP) + parse(TCP6)
    assert stranger(found, 8080, 1001) is None
    assert stranger(found, 8080, 1002) == "port 8080 is taken by another account (uid 1001)"
    # its own socket on 127.0.0.1 does not make the port its own while another has [::]
    assert stranger(found, 20001, 1002) == "port 20001 is taken by another account (uid 1003)"
    assert stranger(found, 30000, 1001) == (
        "nothing listens on port 30000 in this machine's socket table"
    )


async def test_this_machines_table_shows_a_real_listener_as_this_process_s() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert Listener(port, os.geteuid()) in (await listeners() or [])
    assert Listener(port, os.geteuid()) not in (await listeners() or [])


async def test_with_no_socket_table_at_all_nothing_can_be_told(tmp_path: Path) -> None:
    assert await listeners([tmp_path / "tcp", tmp_path / "tcp6"]) is None
    (tmp_path / "tcp").write_text(TCP)
    assert await listeners([tmp_path / "tcp", tmp_path / "tcp6"]) == parse(TCP)


def test_only_a_loopback_address_is_this_machine() -> None:
    assert on_this_machine("127.0.0.1") and on_this_machine("::1") and on_this_machine("localhost")
    assert not on_this_machine("10.0.0.5") and not on_this_machine("node01")
