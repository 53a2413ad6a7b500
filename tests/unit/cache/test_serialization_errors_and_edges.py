"""Serializer errors say exactly what went wrong, and the documented edges hold.

Every ``CacheSerializationError`` carries ``component="cache"`` and details naming the
serializer (and, when relevant, the found format or the offending type, nested or not);
the limits of the arguments (key length, pickle protocol) are exact; and the msgpack
serializer passes msgpack the options the module docstring promises (checked with a
stand-in module, since msgpack is an optional package that is not installed here).
"""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

import pytest

from infra.cache import JsonSerializer, SignedPickleSerializer
from infra.cache.serialization import MsgpackSerializer
from infra.exceptions import CacheSerializationError, ConfigurationError

KEY = b"k" * 32


def module_level_function() -> None:
    """Pickled by reference; renamed below so the reference cannot be resolved."""


module_level_function.__qualname__ = "no_such_name"


# -------------------------------------------------------------------- decode errors
def test_a_corrupt_payload_names_the_serializer() -> None:
    with pytest.raises(CacheSerializationError) as raised:
        JsonSerializer().loads(b"J{not json")
    assert raised.value.component == "cache"
    assert raised.value.details == {"serializer": "json"}
    assert "json could not decode a cached value: JSONDecodeError" in str(raised.value)


@pytest.mark.parametrize(
    ("data", "found"),
    [(b"M\x81\xa1a\x01", "msgpack"), (b"S" + b"\x00" * 40, "signed-pickle"), (b"?x", "unknown")],
)
def test_a_value_of_another_format_names_both(data: bytes, found: str) -> None:
    with pytest.raises(CacheSerializationError) as raised:
        JsonSerializer().loads(data)
    assert raised.value.component == "cache"
    assert raised.value.details == {"serializer": "json", "found_format": found}
    assert f"cached value is in format {found!r} (tag {data[:1]!r}), not 'json'" in str(
        raised.value
    )


def test_raw_bytes_are_never_parsed_as_json() -> None:
    """``B`` + bytes that happen to be valid JSON still read back as those bytes."""
    serializer = JsonSerializer()
    for blob in (b"123", b'{"a": 1}', b"null", b""):
        assert serializer.dumps(blob) == b"B" + blob
        assert serializer.loads(b"B" + blob) == blob


def test_a_bad_signature_is_a_cache_error() -> None:
    forged = b"S" + b"\x00" * 32 + pickle.dumps("x")
    with pytest.raises(CacheSerializationError) as raised:
        SignedPickleSerializer(KEY).loads(forged)
    assert raised.value.component == "cache"
    assert raised.value.details == {"serializer": "signed-pickle"}


# -------------------------------------------------------------------- encode errors
def test_an_unencodable_top_level_value_names_its_type_once() -> None:
    with pytest.raises(CacheSerializationError) as raised:
        JsonSerializer().dumps(object())
    message = str(raised.value)
    assert "json cannot encode a value of type object. Store JSON types" in message
    assert "inside" not in message
    assert raised.value.component == "cache"
    assert raised.value.details == {"serializer": "json", "type": "object", "value_type": "object"}


def test_an_unencodable_nested_value_names_both_types() -> None:
    with pytest.raises(CacheSerializationError) as raised:
        JsonSerializer().dumps({"a": [1, {2, 3}]})
    assert "json cannot encode a value of type set (inside a dict). " in str(raised.value)
    assert raised.value.details == {"serializer": "json", "type": "set", "value_type": "dict"}


def test_a_library_error_without_a_type_names_the_value_type_and_the_error() -> None:
    with pytest.raises(CacheSerializationError) as raised:
        JsonSerializer().dumps(float("nan"))
    message = str(raised.value)
    assert "json cannot encode a value of type float (ValueError: " in message
    assert raised.value.details == {"serializer": "json", "type": "float", "value_type": "float"}


def test_a_pickling_error_becomes_a_serialization_error() -> None:
    with pytest.raises(CacheSerializationError) as raised:
        SignedPickleSerializer(KEY).dumps(module_level_function)
    assert isinstance(raised.value.__cause__, pickle.PicklingError)
    assert "signed-pickle cannot encode a value of type function (PicklingError: " in str(
        raised.value
    )
    assert raised.value.details["value_type"] == "function"


# ---------------------------------------------------------------- argument limits
def test_a_key_of_exactly_16_bytes_is_enough() -> None:
    serializer = SignedPickleSerializer(b"x" * 16, previous_keys=["y" * 16])
    assert serializer.loads(serializer.dumps({1, 2})) == {1, 2}
    with pytest.raises(ValueError, match="secret_key must be at least 16 bytes"):
        SignedPickleSerializer(b"x" * 15)


@pytest.mark.parametrize("protocol", [0, 1, pickle.HIGHEST_PROTOCOL])
def test_every_pickle_protocol_is_accepted(protocol: int) -> None:
    serializer = SignedPickleSerializer(KEY, protocol=protocol)
    assert serializer.loads(serializer.dumps(("t", 1))) == ("t", 1)


@pytest.mark.parametrize("protocol", [-1, pickle.HIGHEST_PROTOCOL + 1])
def test_an_unknown_pickle_protocol_is_refused(protocol: int) -> None:
    with pytest.raises(ValueError, match=rf"protocol must be 0\.\.\d+, got {protocol}"):
        SignedPickleSerializer(KEY, protocol=protocol)


def test_reprs() -> None:
    assert repr(JsonSerializer()) == "JsonSerializer()"
    assert repr(SignedPickleSerializer(KEY, previous_keys=[KEY])) == (
        "SignedPickleSerializer(secret_key=***, keys=2)"
    )


# ----------------------------------------------------------------------- msgpack
class _StandIn(types.ModuleType):
    """Just enough of msgpack: records the options, encodes with pickle."""

    def __init__(self) -> None:
        super().__init__("msgpack")
        self.options: list[dict[str, Any]] = []

    def packb(self, value: Any, **options: Any) -> bytes:
        self.options.append(options)
        if isinstance(value, complex):
            return options["default"](value)  # type: ignore[no-any-return]
        return pickle.dumps(value)

    def unpackb(self, payload: bytes, **options: Any) -> Any:
        self.options.append(options)
        return pickle.loads(payload)  # noqa: S301 -- bytes made by packb above


def test_msgpack_gets_the_documented_options(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = _StandIn()
    monkeypatch.setitem(sys.modules, "msgpack", stand_in)
    serializer = MsgpackSerializer()
    data = serializer.dumps({"a": b"\x00", 1: [2]})
    assert data[:1] == b"M"
    assert serializer.loads(data) == {"a": b"\x00", 1: [2]}
    pack, unpack = stand_in.options
    assert pack["use_bin_type"] is True  # bytes stay bytes
    assert unpack == {"raw": False, "strict_map_key": False}  # str as str, int map keys ok
    with pytest.raises(CacheSerializationError, match="msgpack cannot encode a value of type"):
        serializer.dumps(1j)


def test_msgpack_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ConfigurationError) as raised:
        MsgpackSerializer()
    assert raised.value.component == "cache"
    assert "] MsgpackSerializer needs the 'msgpack' package, which is not installed: " in str(
        raised.value
    )
    assert "or use JsonSerializer (" in str(raised.value)
