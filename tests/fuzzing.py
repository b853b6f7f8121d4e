"""Random and mutated events for tests/test_fuzz.py: valid events of the example flow, one field at a time made hostile.

Every event is (node, name, body, label): the node it is dropped on ("hub"
or a worker's name), its inbox name, its bytes, and what was done to it
(`start_work.job:dotdot`), so that a failure names its mutation class.

Paths are the dangerous values: a script that joins one to its root may
write or delete there. Every path a mutation makes stays inside the sandbox
(`../` at most MAX_UP times, then a victim directory; absolute paths only to
the sandbox's victim), so that a test run can never reach the machine
outside its temporary directory, only the decoys it watches.
"""

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

MAX_UP = 5
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
HUB_TYPES = ["branch_update", "work_status", "work_required", "work_done", "cancel", "boot_worker", "tick", "rebuild"]
WORKER_TYPES = ["start_work", "cancel_work"]


class Raw(str):
    """JSON text put into a body as it is (1e999, NaN, an integer of 5000 digits, a lone surrogate)."""


@dataclass
class Drop:
    node: str
    name: str
    body: bytes
    label: str
    special: str | None = None  # "symlink", "hardlink", "fifo", "directory": not a file with `body`
    serial: int = 0
    plant: bool = False  # put files where its paths lead (victim/fzSERIAL/) first: does anything delete them?


def templates(job: dict, repo: str, worker: str, now: float) -> dict[str, dict]:
    """A valid event of each type of the example flow, about a real job."""
    ids = {"job": job["job"], "attempt": 1}
    return {
        "branch_update": {"repo": repo, "branch": "main", "old": None, "new": job["sha"]},
        "work_status": {**ids, "status": "PASSED", "worker": worker, "ended": job["ended"], "exit_code": 0,
                        "reason": "exit status 0"},
        "work_required": {"worker": worker, "kind": "build", "after": job["job"], "attempt": 1},
        "work_done": {"job": job["job"], "worker": worker, "status": "PASSED"},
        "cancel": {"job": job["job"]},
        "rebuild": {"job": job["job"], "downstream": True, "request": "fuzz1"},
        "boot_worker": {"kind": "build", "name": worker},
        "tick": {"at": now},
        "start_work": {**ids, "repo": repo, "branch": "main", "sha": job["sha"], "kind": "build", "params": {},
                       "queued": job["queued"], "timeout": 3600.0, "_timeout": 4200.0},
        "cancel_work": {**ids, "status": "CANCELLED", "reason": "cancelled by request"},
    }


class Fuzzer:
    """Drops, one after another, from a fixed seed: the same seed gives the same sequence."""

    def __init__(self, seed: int, templates: dict[str, dict], sandbox: Path, worker: str):
        self.rng = random.Random(seed)
        self.templates, self.sandbox, self.worker = templates, sandbox, worker
        self.serial = 0

    def next(self) -> Drop:
        self.serial += 1
        event_type = self.rng.choice(HUB_TYPES + WORKER_TYPES * 2)  # the worker's run beside the hub's
        node = self.worker if event_type in WORKER_TYPES else "hub"
        if self.rng.random() < 0.05:
            node = "hub" if node != "hub" else self.worker  # a type the node has no script for
        roll = self.rng.random()
        if roll < 0.25:
            drop = self._broken_body(node, event_type)
        elif roll < 0.30:
            drop = self._odd_file(node, event_type)
        else:
            drop = self._mutated(node, event_type)
        drop.serial = self.serial
        return drop

    # --- field mutations ------------------------------------------------

    def _mutated(self, node: str, event_type: str) -> Drop:
        payload = json.loads(json.dumps(self.templates[event_type]))
        labels = []
        for _ in range(self.rng.choice([1, 1, 1, 1, 2, 3])):
            labels.append(self._mutate_one(payload))
        if event_type == "boot_worker":
            payload, labels = self._no_new_workers(payload, labels)
        label = f"{event_type}.{'+'.join(labels)}"
        plant = any(m.endswith((":dotdot", ":absolute")) for m in labels) and self.rng.random() < 0.5
        return Drop(node, self._name(event_type), dump(payload).encode("utf-8", "surrogatepass"), label, plant=plant)

    def _mutate_one(self, payload: dict) -> str:
        roll = self.rng.random()
        if roll < 0.08 and payload:
            field = self.rng.choice(sorted(payload))
            del payload[field]
            return f"{field}:missing"
        if roll < 0.16:
            field, kind = self.rng.choice(EXTRA_FIELDS)
            payload[field] = self._value(kind)
            return f"{field}:extra-{kind}"
        names = [f for f in IDENTIFIERS if f in payload] if self.rng.random() < 0.5 else []
        field = self.rng.choice(names or sorted(payload) or ["job"])
        if names and self.rng.random() < 0.4:
            kind = self.rng.choice(["dotdot", "absolute"])
            payload[field] = self._value(kind, payload.get(field))
            return f"{field}:{kind}"
        if field == "params" and isinstance(payload.get("params"), dict) and self.rng.random() < 0.6:
            name, kind = self.rng.choice(PARAM_FIELDS)
            payload["params"][name] = self._value(kind)
            return f"params.{name}:{kind}"
        kind = self.rng.choice(VALUE_KINDS)
        payload[field] = self._value(kind, payload.get(field))
        return f"{field}:{kind}"

    def _no_new_workers(self, payload: dict, labels: list[str]) -> tuple[dict, list[str]]:
        """A boot_worker that names a new, valid worker of the booted kind starts a real worker process, by
        design: the fuzzer never gives such an order, so that a run cannot flood the machine with workers."""
        name = payload.get("name")
        if payload.get("kind") == "build" and NODE_NAME.match(str(name)) and str(name) != self.worker:
            payload["name"] = self.worker
            labels.append("name:kept")
        return payload, labels

    def _value(self, kind: str, current=None):
        rng, serial = self.rng, self.serial
        victim = f"victim/fz{serial}"
        values = {
            "null": lambda: None, "true": lambda: True, "zero": lambda: 0, "float": lambda: 1.5,
            "list": lambda: [current], "object": lambda: {"value": current}, "empty": lambda: "",
            "string-of": lambda: str(current), "number-as-string": lambda: "1",
            "huge-int": lambda: rng.choice([2 ** 63, 10 ** 30, -(2 ** 63), 10 ** 300]),
            "huge-literal": lambda: Raw("1" + "0" * 5000),
            "1e999": lambda: Raw(rng.choice(["1e999", "-1e999", "1E400"])),
            "nan": lambda: Raw(rng.choice(["NaN", "Infinity", "-Infinity"])),
            "nan-string": lambda: rng.choice(["NaN", "nan", "inf", "-inf", "1e999"]),
            "negative": lambda: rng.choice([-1, -1.5, -3600, -0.0]),
            "dotdot": lambda: rng.choice([".", "..", "../" * rng.randint(1, MAX_UP) + victim,
                                          "a/" + "../" * rng.randint(1, MAX_UP) + victim,
                                          f"{current}/../../{victim}" if isinstance(current, str) else victim]),
            "absolute": lambda: str(self.sandbox / victim),
            "control": lambda: f"{current}{rng.choice(CONTROLS)}x" if isinstance(current, str) else rng.choice(CONTROLS),
            "long": lambda: rng.choice(["a" * 300, "a" * 5000, "é" * 20000, "a" * 70000]),
            "nested": lambda: nested(rng.choice([10, 100, 2000])),
            "unicode": lambda: f"{current}{rng.choice(UNICODE)}" if isinstance(current, str) else rng.choice(UNICODE),
            "surrogate": lambda: Raw(rng.choice(['"\\ud800"', '"a\\udfffb"', '"\\ud83d"'])),
            "option": lambda: rng.choice(["-rf", "--upload-pack=touch /tmp/x", "--help", "-"]),
            "remote-helper": lambda: rng.choice(["ext::sh -c touch% fz", "fd::3", "ssh://-oProxyCommand=false/x",
                                                 "ssh://127.0.0.1:1/x", "file:///nonexistent-fz"]),
            "other-id": lambda: rng.choice(["20260101T000000Z-abcdef", "20260101T000000Z-ABCDEF", "x" * 63]),
        }
        return values[kind]()

    # --- whole bodies and files -----------------------------------------

    def _broken_body(self, node: str, event_type: str) -> Drop:
        template = dump(self.templates[event_type]).encode()
        kind, body = self.rng.choice([
            ("empty", b""), ("not-json", b"{not json"), ("truncated", template[: len(template) // 2]),
            ("array", b"[1, 2]"), ("string", b'"x"'), ("null", b"null"), ("number", b"1e999"),
            ("bom", "\ufeff".encode() + template), ("latin1", template[:-2] + b', "x": "\xe9"}'),
            ("binary", bytes(self.rng.randrange(256) for _ in range(200))), ("deep", b"[" * 100000),
            ("too-big", b'{"x": "' + b"a" * 70000 + b'"}'), ("nul", b'{"x": 1}\x00'),
            ("two-objects", template + template), ("duplicate-keys", b'{"job": 1, "job": "x"}'),
        ])
        return Drop(node, self._name(event_type, odd=self.rng.random() < 0.2), body, f"body:{kind}")

    def _odd_file(self, node: str, event_type: str) -> Drop:
        special = self.rng.choice(["symlink", "hardlink", "fifo", "directory"])
        return Drop(node, self._name(event_type), b"", f"file:{special}", special)

    def _name(self, event_type: str, odd: bool = False) -> str:
        if odd:
            return self.rng.choice([f"{event_type}.fz {self.serial}.json", f"{event_type}.fz\x1b{self.serial}.json",
                                    f"{event_type.upper()}.fz{self.serial}.json", f"x{'y' * 200}{self.serial}.json",
                                    f"{event_type}..fz{self.serial}.json", f"-{event_type}.fz{self.serial}.json"])
        return f"{event_type}.fz{self.serial:06d}.json"


IDENTIFIERS = ["job", "worker", "name", "kind", "branch", "repo", "sha", "status", "attempt", "timeout"]  # what
# becomes a path, a file name, an argument or a number of seconds: mutated more often
EXTRA_FIELDS = [("_timeout", "huge-int"), ("_timeout", "negative"), ("_timeout", "nan-string"),
                ("_timeout", "1e999"), ("_timeout", "zero"), ("extra", "nested"), ("extra", "long"),
                ("__proto__", "object"), ("after", "dotdot"), ("request", "dotdot"), ("request", "control")]
PARAM_FIELDS = [("timeout", "huge-int"), ("timeout", "negative"), ("timeout", "nan-string"), ("timeout", "1e999"),
                ("timeout", "string-of"), ("PATH", "dotdot"), ("LD_PRELOAD", "absolute"), ("x", "control"),
                ("x", "long"), ("x", "nested"), ("bad name", "empty")]
VALUE_KINDS = ["null", "true", "zero", "float", "list", "object", "empty", "string-of", "number-as-string",
               "huge-int", "huge-literal", "1e999", "nan", "nan-string", "negative", "dotdot", "dotdot", "dotdot",
               "absolute", "control", "long", "nested", "unicode", "surrogate", "option", "remote-helper",
               "other-id", "other-id"]
CONTROLS = ["\x00", "\x1b[2J", "\n", "\r", "\t", "\x7f", "\x9b", "\x07"]
UNICODE = ["\u202e", "\u2066", "\u200f", "\ufeff", "é", "日本", "😀", "\U000e0041", "ｍａｉｎ", "\u0301", "\uffff"]


def nested(depth: int):
    """Objects `depth` deep; past what a recursive writer can nest, as text."""
    if depth > 200:
        return Raw('{"a": ' * depth + '"bottom"' + "}" * depth)
    value = "bottom"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def dump(value) -> str:
    """JSON text of `value`, with Raw pieces as they are (json.dumps refuses them, or cannot nest this deep)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)
