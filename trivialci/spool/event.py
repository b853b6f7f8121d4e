"""Event files: their names and their bodies.

Name:  TYPE.json or TYPE.ANYTHING.json, at most 160 bytes. TYPE is
       [a-z][a-z0-9_]* (at most 64) and selects the script; ANYTHING is made of
       letters, digits and . _ - + = : , @. Programs use unique, sortable names:
       TYPE.<YYYYmmddTHHMMSS.ffffffZ>.<host>.<pid>.<random>.json
       Dot-files and names that do not end in .json are not events: a node
       leaves them alone (editors' temp files, partial copies).
Body:  one JSON object, UTF-8, at most MAX_EVENT_BYTES, standard JSON (no NaN or
       Infinity, and no number too large for a double). What is dropped is what
       the script receives. Keys that start with "_" are read by the node
       ("_timeout": seconds); all others belong to the scripts.
"""

import collections
import json
import math
import os
import re
import socket
import time

from ..errors import BadInput

MAX_EVENT_BYTES = 65536  # base64 of this still fits one argv string (128 KiB)
MAX_NAME_BYTES = 160
TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
NAME_PATTERN = re.compile(r"([a-z][a-z0-9_]{0,63})(\.[A-Za-z0-9_+=:,@-][A-Za-z0-9_.+=:,@-]*)?\.json\Z")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


class BadEvent(BadInput):
    """An event file or payload that the protocol refuses; the message is the reason."""


def is_candidate(name: str) -> bool:
    """Whether a directory entry is meant as an event at all (others are left alone)."""
    return name.endswith(".json") and not name.startswith(".")


def check_type(event_type: str) -> str:
    if not TYPE_PATTERN.match(event_type):
        raise BadEvent(
            f"bad event type {event_type!r}: a type is a lowercase letter followed by "
            "lowercase letters, digits or '_' (at most 64), e.g. branch_update"
        )
    return event_type


def type_of(name: str) -> str:
    """The TYPE of a valid event file name; BadEvent for any other name."""
    match = NAME_PATTERN.match(name)
    if not match or len(name.encode()) > MAX_NAME_BYTES:
        raise BadEvent(
            f"bad event file name {name!r}: name it TYPE.json or TYPE.ANYTHING.json, "
            "TYPE being [a-z][a-z0-9_]*, ANYTHING letters, digits and ._-+=:,@ "
            f"(at most {MAX_NAME_BYTES} bytes)"
        )
    return match.group(1)


def unique_name(event_type: str) -> str:
    """A name no other writer will pick, sorting by creation time within a type."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return f"{check_type(event_type)}.{stamp}.{_HOST}.{os.getpid()}.{os.urandom(3).hex()}.json"


def encode(payload) -> bytes:
    """The body for a payload: one JSON object, UTF-8, within the size limit."""
    if not isinstance(payload, dict):
        raise BadEvent(f"the payload must be a JSON object ({{...}}), not {_json_kind(payload)}")
    try:
        body = (json.dumps(payload, ensure_ascii=False, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as error:
        raise BadEvent(f"the payload cannot be written as JSON: {error}") from None
    return check_size(body)


def check_size(body: bytes) -> bytes:
    if len(body) > MAX_EVENT_BYTES:
        raise BadEvent(
            f"the event is {len(body)} bytes, over the limit of {MAX_EVENT_BYTES}: "
            "put large data in a file or the artifact store and send its path"
        )
    return body


def decode(body: bytes) -> dict:
    """The payload of a body; BadEvent says, for a person, why it is not one."""
    check_size(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadEvent(f"the body is not UTF-8 text ({error})") from None
    try:
        payload = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite,
                             object_pairs_hook=_unique_names)
    except ValueError as error:
        raise BadEvent(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise BadEvent("the body is JSON nested too deeply to read") from None
    if not isinstance(payload, dict):
        raise BadEvent(f"the body is JSON but not an object ({{...}}): it is {_json_kind(payload)}")
    _refuse_lone_surrogates(text, payload)
    return payload


def parse_payload_text(text: str) -> dict:
    """A payload given as text by a person (the CLI's JSON argument)."""
    return decode(check_size(text.encode("utf-8", "surrogateescape")))


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    """A number too large for a float (1e999) would reach the scripts as infinity, which JSON has not."""
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"the number {literal[:40]} is out of range")
    return value


def _unique_names(pairs: list) -> dict:
    """A name given twice is read differently by different readers (first or last wins): refused."""
    payload = dict(pairs)
    if len(payload) != len(pairs):
        [(repeated, _)] = collections.Counter(name for name, _ in pairs).most_common(1)
        raise ValueError(f"the name {repeated[:40]!r} is given twice in one object")
    return payload


def _refuse_lone_surrogates(text: str, payload: dict) -> None:
    """A \\uD800-\\uDFFF escape without its pair is no character: a script could neither print nor send it."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadEvent("the body is not valid JSON text: it escapes half of a UTF-16 surrogate pair "
                       "(\\uD800-\\uDFFF) without the other half") from None


def _json_kind(value) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
