"""The wire protocol: what round-trips, and what decode refuses (with the id when it can read one)."""

from __future__ import annotations

import datetime

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rayeval.transport import (
    ERROR,
    PING,
    PONG,
    REPLY,
    REQUEST,
    VERSION,
    Envelope,
    ProtocolError,
    decode,
    encode,
)
from rayeval.transport.protocol import error_body

# msgpack-able bodies as the transport promises to carry them. Tuples are left
# out on purpose: they come back as lists (documented in protocol.py).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.binary(max_size=50)
)
bodies = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(min_value=-1000, max_value=1000), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([REQUEST, REPLY, ERROR, PING, PONG]), request_id=st.text(max_size=40), body=bodies)
def test_any_body_round_trips_unchanged(kind, request_id, body):
    env = Envelope(kind, request_id, body)
    assert decode(encode(env)) == env


def test_wire_format_is_a_four_element_msgpack_array():
    raw = msgpack.unpackb(encode(Envelope(REQUEST, "r1", {"x": b"\x00"})), raw=False)
    assert raw == [VERSION, "req", "r1", {"x": b"\x00"}]


def test_bytes_and_str_stay_distinct():
    env = decode(encode(Envelope(REPLY, "r", [b"abc", "abc"])))
    assert env.body == [b"abc", "abc"]
    assert isinstance(env.body[0], bytes) and isinstance(env.body[1], str)


def test_error_body_shape():
    assert error_body("ValueError", "bad", 1) == {"kind": "ValueError", "message": "bad", "retryable": True}


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x94\x01", b"not msgpack at all \xff\xfe", msgpack.packb([1, "req", "r1", 1]) + b"\x00"],
    ids=["empty", "reserved-byte", "truncated-header", "garbage", "trailing-bytes"],
)
def test_undecodable_bytes_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode(data)


@pytest.mark.parametrize(
    "obj, expected_id",
    [
        ({"v": 1}, None),
        ("req", None),
        ([1, "req", "r1"], "r1"),
        ([1, "req", "r1", None, "extra"], "r1"),
        ([1, "req", 7, None], None),
        ([1, "req", b"r1", None], None),
    ],
    ids=["map", "str", "three-elements", "five-elements", "int-id", "bytes-id"],
)
def test_wrong_shape_raises_protocol_error(obj, expected_id):
    with pytest.raises(ProtocolError) as info:
        decode(msgpack.packb(obj, use_bin_type=True))
    assert info.value.request_id == expected_id


@pytest.mark.parametrize("version", [0, 2, 99, "1", True, None, 1.0])
def test_unknown_version_is_rejected_with_its_request_id(version):
    with pytest.raises(ProtocolError, match="version") as info:
        decode(msgpack.packb([version, "req", "abc", None]))
    assert info.value.request_id == "abc"


@pytest.mark.parametrize("kind", ["request", "", "REQ", 3, None])
def test_unknown_kind_is_rejected_with_its_request_id(kind):
    with pytest.raises(ProtocolError, match="kind") as info:
        decode(msgpack.packb([1, kind, "abc", None]))
    assert info.value.request_id == "abc"


def test_broken_body_still_yields_request_id():
    good = encode(Envelope(REQUEST, "keep-me", {"long": "x" * 100}))
    with pytest.raises(ProtocolError) as info:
        decode(good[:-10])  # body cut short: whole-message decode fails, header is intact
    assert info.value.request_id == "keep-me"


def test_extension_types_are_refused():
    data = msgpack.packb([1, "req", "e1", msgpack.ExtType(5, b"payload")])
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.request_id == "e1"


def test_msgpack_timestamp_extension_is_refused():
    data = msgpack.packb([1, "rep", "t1", {"at": msgpack.Timestamp(1, 2)}])
    with pytest.raises(ProtocolError, match="Timestamp") as info:
        decode(data)
    assert info.value.request_id == "t1"


def test_bytes_that_look_like_a_timestamp_marker_are_fine():
    env = Envelope(REPLY, "b", b"\xd6\xff\xd7\xff\xc7\x0c\xff")
    assert decode(encode(env)) == env


def test_unhashable_map_key_is_a_protocol_error_not_a_crash():
    # [1, "req", "k", {[1]: 2}] hand-assembled: array used as a map key
    data = b"\x94\x01\xa3req\xa1k\x81\x91\x01\x02"
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.request_id == "k"


@pytest.mark.parametrize("body", [object(), {1, 2}, datetime.datetime(2024, 1, 1), 2**70])
def test_unencodable_body_raises_protocol_error_with_id(body):
    with pytest.raises(ProtocolError) as info:
        encode(Envelope(REQUEST, "u1", body))
    assert info.value.request_id == "u1"
