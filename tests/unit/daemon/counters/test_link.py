from __future__ import annotations

import hiredis

from daemon.counters.link import pack


def test_pack_encodes_text_numbers_and_bytes_as_resp_bulk_strings() -> None:
    assert (
        pack(("EVALSHA", "ab", 0, 1.5))
        == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$3\r\n1.5\r\n"
    )
    assert pack(("SET", "k", b"v")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"


def test_pack_counts_a_non_ascii_argument_in_bytes() -> None:
    packed = pack(("HGET", "u:é"))
    assert packed == b"*2\r\n$4\r\nHGET\r\n$4\r\nu:\xc3\xa9\r\n"
    reader = hiredis.Reader()  # a RESP array of bulk strings reads back the same
    reader.feed(packed)
    assert reader.gets() == [b"HGET", "u:é".encode()]
