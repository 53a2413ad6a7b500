"""Serializers: tagged formats, safe defaults, signed pickle, clear errors."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import sys
import threading
from typing import Any

import pytest

from infra.cache.serialization import (
    RAW_BYTES_TAG,
    JsonSerializer,
    MsgpackSerializer,
    Serializer,
    SignedPickleSerializer,
)
from infra.exceptions import CacheSerializationError, ConfigurationError

KEY = b"k" * 32


class Point:
    """A plain class: not JSON, but picklable (module level)."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


class Exploding:
    """Unpickling it runs code: the reason unsigned pickle is never loaded."""

    ran: bool = False

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (Exploding._trigger, ())

    @staticmethod
    def _trigger() -> None:
        Exploding.ran = True


# ------------------------------------------------------------------------------ JSON
@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, "x", None, True]},
        [1, "two", 3.0],
        "héllo ✓",
        0,
        -(2**70),
        1.25,
        True,
        None,
        {},
    ],
)
def test_json_round_trips_json_values(value: Any) -> None:
    """Every JSON type comes back equal."""
    s = JsonSerializer()
    assert s.loads(s.dumps(value)) == value


def test_json_output_is_tagged_compact_utf8() -> None:
    """One tag byte, then JSON without spaces, non-ASCII kept as UTF-8."""
    assert JsonSerializer().dumps({"a": [1, 2], "é": "✓"}) == 'J{"a":[1,2],"é":"✓"}'.encode()


def test_json_documented_lossy_cases() -> None:
    """Tuples read back as lists, int dict keys as strings (JSON's own limits)."""
    s = JsonSerializer()
    assert s.loads(s.dumps((1, 2))) == [1, 2]
    assert s.loads(s.dumps({1: "a"})) == {"1": "a"}


def test_top_level_bytes_are_stored_raw_and_read_by_any_serializer() -> None:
    """A bytes value is tag B plus the bytes themselves, readable by each serializer."""
    blob = bytes(range(256))
    data = JsonSerializer().dumps(blob)
    assert data == RAW_BYTES_TAG + blob
    assert JsonSerializer().loads(data) == blob
    assert SignedPickleSerializer(KEY).loads(data) == blob


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        ({"when": object()}, "object"),
        ([b"nested bytes"], "bytes"),
        (Point(1, 2), "test_serialization.Point"),
    ],
)
def test_json_refuses_unencodable_values_naming_the_type(value: Any, type_name: str) -> None:
    """An unsupported type raises CacheSerializationError naming that type."""
    with pytest.raises(CacheSerializationError) as info:
        JsonSerializer().dumps(value)
    err = info.value
    assert err.details["type"].endswith(type_name)
    assert type_name.rsplit(".", 1)[-1] in str(err)
    assert err.retryable is False


def test_json_refuses_nan_and_circular_values() -> None:
    """NaN is not JSON; a value containing itself cannot be encoded."""
    s = JsonSerializer()
    with pytest.raises(CacheSerializationError, match="float"):
        s.dumps(float("nan"))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CacheSerializationError, match="list"):
        s.dumps(loop)


def test_json_corrupt_payload_is_a_serialization_error() -> None:
    """A J-tagged payload that is not JSON raises, never returns garbage."""
    with pytest.raises(CacheSerializationError, match="could not decode"):
        JsonSerializer().loads(b"J{not json")


def test_format_mismatch_names_both_formats() -> None:
    """Reading another serializer's value says which format was found."""
    pickled = SignedPickleSerializer(KEY).dumps({"a": 1})
    with pytest.raises(CacheSerializationError) as info:
        JsonSerializer().loads(pickled)
    assert info.value.details == {"serializer": "json", "found_format": "signed-pickle"}
    with pytest.raises(CacheSerializationError, match="'unknown'"):
        JsonSerializer().loads(b'{"untagged": 1}')


def test_serializers_satisfy_the_protocol() -> None:
    """Each serializer is a Serializer (runtime-checkable protocol)."""
    assert isinstance(JsonSerializer(), Serializer)
    assert isinstance(SignedPickleSerializer(KEY), Serializer)


# ---------------------------------------------------------------------- signed pickle
def test_signed_pickle_round_trips_arbitrary_objects() -> None:
    """Values JSON cannot hold (sets, classes, tuples) round trip exactly."""
    s = SignedPickleSerializer(KEY)
    value = {"p": Point(1, 2), "s": {1, 2}, "t": (1, "x")}
    assert s.loads(s.dumps(value)) == value


def test_signed_pickle_layout_is_tag_hmac_pickle() -> None:
    """Tag S, then HMAC-SHA256 over tag and pickle, then the pickle."""
    data = SignedPickleSerializer(KEY).dumps([1, 2])
    body = data[33:]
    assert data[:1] == b"S"
    assert data[1:33] == hmac.new(KEY, b"S" + body, hashlib.sha256).digest()
    assert pickle.loads(body) == [1, 2]  # noqa: S301 - bytes this test just made


def test_tampered_pickle_is_rejected_and_never_unpickled() -> None:
    """A payload swapped for a malicious pickle fails verification; its code never runs."""
    s = SignedPickleSerializer(KEY)
    genuine = s.dumps("ok")
    forged = genuine[:33] + pickle.dumps(Exploding())
    Exploding.ran = False
    with pytest.raises(CacheSerializationError, match="signature"):
        s.loads(forged)
    assert Exploding.ran is False


def test_pickle_signed_with_another_key_is_rejected() -> None:
    """Data signed by a process without our key is refused."""
    other = SignedPickleSerializer(b"x" * 32).dumps({"a": 1})
    with pytest.raises(CacheSerializationError, match="signature"):
        SignedPickleSerializer(KEY).loads(other)


def test_truncated_signed_payload_is_rejected() -> None:
    """A payload shorter than the MAC fails verification instead of crashing."""
    with pytest.raises(CacheSerializationError, match="signature"):
        SignedPickleSerializer(KEY).loads(b"S" + b"\x00" * 10)


def test_previous_keys_are_accepted_for_reading_only() -> None:
    """Key rotation: old values still load; new values are signed with the new key."""
    old, new = b"o" * 32, b"n" * 32
    written_before = SignedPickleSerializer(old).dumps(42)
    rotated = SignedPickleSerializer(new, previous_keys=[old])
    assert rotated.loads(written_before) == 42
    assert SignedPickleSerializer(new).loads(rotated.dumps(7)) == 7
    with pytest.raises(CacheSerializationError):
        SignedPickleSerializer(old).loads(rotated.dumps(7))


def test_unpicklable_value_names_its_type() -> None:
    """A lock cannot be pickled: the error names the offending type."""
    with pytest.raises(CacheSerializationError, match="lock"):
        SignedPickleSerializer(KEY).dumps({"lock": threading.Lock()})


@pytest.mark.parametrize("bad", [b"", "short", b"x" * 15])
def test_short_secret_keys_are_refused(bad: bytes | str) -> None:
    """Keys under 16 bytes are a ValueError that says how to make one."""
    with pytest.raises(ValueError, match="token_bytes"):
        SignedPickleSerializer(bad)


def test_secret_key_type_and_previous_keys_shape_are_checked() -> None:
    """A non-bytes key and a bare key as previous_keys are TypeErrors."""
    with pytest.raises(TypeError, match="secret_key"):
        SignedPickleSerializer(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="previous_keys"):
        SignedPickleSerializer(KEY, previous_keys=b"y" * 32)  # type: ignore[arg-type]


def test_repr_never_shows_the_secret_key() -> None:
    """The key is masked in repr."""
    text = repr(SignedPickleSerializer("a-very-secret-signing-key"))
    assert "a-very-secret" not in text
    assert "***" in text


# --------------------------------------------------------------------------- msgpack
def test_msgpack_without_the_package_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Selecting msgpack when it is not installed names the package to install."""
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(ConfigurationError) as info:
        MsgpackSerializer()
    assert info.value.details["package"] == "msgpack"
    assert "pip install msgpack" in str(info.value)
