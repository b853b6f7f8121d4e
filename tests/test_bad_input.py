"""Bad input: whatever lands in an inbox ends in failed/DAY/ with a reason a person understands.

Every refused entry gets a .result.json whose "reason" says what was wrong, the
node goes on with the next event, and nothing outside the spool is read.
Entries that are not meant as events (dot-files, names not ending in .json)
stay where they are.
"""

import os
import secrets
import stat

import pytest
from conftest import leftovers, records, run_cli, wait_for, write_script

from trivialci.spool.event import MAX_EVENT_BYTES

OK_SCRIPT = "#!/bin/sh\ncat > /dev/null\necho handled\n"


@pytest.fixture
def inbox(spool):
    directory = spool / "inbox"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def ok_pipeline(pipeline):
    write_script(pipeline, "ok", OK_SCRIPT, executable=True)
    return pipeline


def drain(spool, pipeline, *args):
    """Run `trivialci hub --drain` to completion (a hang fails the test through run_cli's timeout)."""
    return run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--settle", "0.2", "--grace", "0.5",
                   *args, timeout=30)


def files_in(root):
    """Every regular file under `root`, without following a symbolic link."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path


# --- the bad entries: each maker puts one into the inbox and returns its name ------------------

def secret_outside(tmp_path):
    """A valid event outside the spool: if the node followed a link to it, it would run it."""
    secret = f"outside-{secrets.token_hex(8)}"
    target = tmp_path / "outside.json"
    target.write_text(f'{{"secret": "{secret}"}}')
    return target, secret


def make_symlink(inbox, tmp_path):
    target, _ = secret_outside(tmp_path)
    (inbox / "x.json").symlink_to(target)
    return "x.json"


def make_dangling_symlink(inbox, tmp_path):
    (inbox / "x.json").symlink_to(tmp_path / "nowhere.json")
    return "x.json"


def make_fifo(inbox, tmp_path):
    os.mkfifo(inbox / "x.json")
    return "x.json"


def make_char_device(inbox, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("creating a character device (os.mknod) needs root")
    try:
        os.mknod(inbox / "x.json", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("this root may not create device nodes (no CAP_MKNOD, e.g. in a container)")
    return "x.json"


def make_directory(inbox, tmp_path):
    (inbox / "x.json").mkdir()
    (inbox / "x.json" / "inside.json").write_text("{}")
    return "x.json"


def make_hard_link(inbox, tmp_path):
    target, _ = secret_outside(tmp_path)
    os.link(target, inbox / "x.json")
    return "x.json"


def body(data: bytes, name="ok.json"):
    def make(inbox, tmp_path):
        (inbox / name).write_bytes(data)
        return name
    return make


SPECIAL_FILES = {
    "symlink_outside_the_spool": (make_symlink, "symbolic link"),
    "dangling_symlink": (make_dangling_symlink, "symbolic link"),
    "fifo": (make_fifo, "FIFO"),
    "character_device": (make_char_device, "character device"),
    "directory": (make_directory, "directory"),
    "hard_link": (make_hard_link, "hard link"),
}

BAD_BODIES = {
    "over_the_size_limit": (b'{"a": "' + b"x" * MAX_EVENT_BYTES + b'"}', f"over the limit of {MAX_EVENT_BYTES}"),
    "invalid_json": (b'{"a": 1,', "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "json_array": (b"[1, 2]", "not an object"),
    "json_string": (b'"text"', "not an object"),
    "invalid_utf8": (b'{"a": "\xff\xfe"}', "not UTF-8"),
    "nan": (b'{"a": NaN}', "NaN"),
    "infinity": (b'{"a": -Infinity}', "Infinity"),
    "number_too_large": (b'{"a": 1e999}', "out of range"),
    "negative_number_too_large": (b'{"a": [-1E400]}', "out of range"),
    "nested_too_deeply": (b'{"a": ' + b"[" * 30000 + b"]" * 30000 + b"}", "nested too deeply"),
    "number_out_of_range": (b'{"timeout": 1e999}', "the number 1e999 is out of range"),
    "name_given_twice": (b'{"job": "a", "x": {"job": 1, "job": 2}}', "'job' is given twice"),
    "lone_surrogate": (b'{"branch": "main\\ud800"}', "half of a UTF-16 surrogate pair"),
}

BAD_NAMES = {
    "upper_case_type": "Hello.json",
    "space": "my event.json",
    "leading_digit": "1x.json",
    "newline": "bad\nname.json",
    "dash_first": "-x.json",
    "empty_middle_part": "ok..json",
    "not_ascii": "h\u00e9llo.json",
    "too_long": "a" * 200 + ".json",
}

BAD_TIMEOUTS = {
    "zero": "0",
    "negative": "-1",
    "string": '"10"',
    "boolean": "true",
    "null": "null",
    "list": "[1]",
    "over_a_week": "1e9",
}

CASES = {
    **SPECIAL_FILES,
    **{key: (body(data), words) for key, (data, words) in BAD_BODIES.items()},
    **{key: (body(b'{"n": 1}', name), "bad event file name") for key, name in BAD_NAMES.items()},
    **{f"timeout_{key}": (body(f'{{"_timeout": {value}}}'.encode()), '"_timeout" must be')
       for key, value in BAD_TIMEOUTS.items()},
}


@pytest.mark.parametrize("make, words", list(CASES.values()), ids=list(CASES))
def test_a_bad_entry_goes_to_failed_with_its_reason_and_the_next_event_is_handled(
        make, words, inbox, ok_pipeline, tmp_path):
    bad_name = make(inbox, tmp_path)
    good_name = "ok.after.json" if bad_name != "ok.after.json" else "ok.other.json"
    (inbox / good_name).write_text('{"good": true}')

    drained = drain(inbox.parent, ok_pipeline)

    assert drained.returncode == 0, drained.stderr
    assert "Traceback" not in drained.stderr
    [refused] = records(inbox.parent, "failed")
    assert refused["event"] == bad_name and refused["status"] == "failed"
    assert words in refused["reason"], refused["reason"]
    assert refused["exit_code"] is None and refused["script"] is None, "nothing was run for it"
    assert [r["event"] for r in records(inbox.parent, "done")] == [good_name]
    assert leftovers(inbox.parent) == []


def test_a_refused_entry_keeps_its_result_beside_it_under_a_safe_name(inbox, ok_pipeline):
    (inbox / "bad\nname.json").write_text('{"n": 1}')
    assert drain(inbox.parent, ok_pipeline).returncode == 0
    [day] = (inbox.parent / "failed").iterdir()
    names = sorted(p.name for p in day.iterdir())
    assert all("\n" not in name for name in names), names
    event, result = names
    assert event.endswith(".json") and "-badname-" in event, event
    assert result == event[: -len(".json")] + ".result.json"
    assert (day / event).read_text() == '{"n": 1}', "the refused event is kept as it came"


def test_a_symlink_is_refused_without_reading_its_target(inbox, ok_pipeline, tmp_path):
    target, secret = secret_outside(tmp_path)
    (inbox / "x.json").symlink_to(target)

    assert drain(inbox.parent, ok_pipeline).returncode == 0

    [refused] = records(inbox.parent, "failed")
    assert "symbolic link" in refused["reason"] and records(inbox.parent, "done") == []
    for path in files_in(inbox.parent):
        with open(path, "rb") as handle:
            assert secret.encode() not in handle.read(), f"{path} holds what the link pointed to"
    assert secret in target.read_text(), "the target itself is left as it was"


def test_a_fifo_does_not_hold_up_a_running_hub(inbox, ok_pipeline, start_node):
    node = start_node("hub", "--spool", inbox.parent, "--pipeline", ok_pipeline, "--settle", "0.2")
    wait_for(lambda: (inbox.parent / "hub.json").exists(), message="the hub to start")
    os.mkfifo(inbox / "x.json")
    wait_for(lambda: records(inbox.parent, "failed"), timeout=10, message="the FIFO to be refused")
    (inbox / "ok.json").write_text('{"good": true}')
    wait_for(lambda: records(inbox.parent, "done"), timeout=10, message="the event after the FIFO to be handled")
    assert "FIFO" in records(inbox.parent, "failed")[0]["reason"]
    assert node.proc.poll() is None, node.stderr()


def test_a_running_hub_refuses_every_kind_of_bad_entry_and_keeps_going(inbox, ok_pipeline, tmp_path, start_node):
    # inotify reports files only: a directory renamed in is found by the rescan
    node = start_node("hub", "--spool", inbox.parent, "--pipeline", ok_pipeline, "--settle", "0.2", "--rescan", "0.5")
    wait_for(lambda: (inbox.parent / "hub.json").exists(), message="the hub to start")
    expected = {}
    for key, (make, words) in CASES.items():
        if key == "character_device" and os.geteuid() != 0:
            continue
        staging = tmp_path / "staging" / key
        staging.mkdir(parents=True)
        name = make(staging, staging)
        unique = name[: -len(".json")] + f".{key}.json" if key not in BAD_NAMES else name
        os.rename(staging / name, inbox / unique)
        expected[unique] = words

    wait_for(lambda: len(records(inbox.parent, "failed")) == len(expected), timeout=10,
             message="every bad entry to be refused")
    (inbox / "ok.json").write_text('{"good": true}')
    wait_for(lambda: records(inbox.parent, "done"), timeout=10, message="the good event after them")

    reasons = {r["event"]: r["reason"] for r in records(inbox.parent, "failed")}
    assert reasons.keys() == expected.keys()
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
    assert [r["event"] for r in records(inbox.parent, "done")] == ["ok.json"]
    assert node.proc.poll() is None and "Traceback" not in node.stderr(), node.stderr()


def test_an_event_of_exactly_the_size_limit_is_accepted(inbox, ok_pipeline):
    padding = MAX_EVENT_BYTES - len(b'{"a": ""}')
    (inbox / "ok.json").write_bytes(b'{"a": "' + b"x" * padding + b'"}')
    assert (inbox / "ok.json").stat().st_size == MAX_EVENT_BYTES
    assert drain(inbox.parent, ok_pipeline).returncode == 0
    assert [r["status"] for r in records(inbox.parent, "done")] == ["done"]


NOT_EVENTS = [".hidden.json", ".ok.json.swp", "ok.json~", "ok.json.swp", "ok.json.tmp", "notes.txt", "ok.JSON",
              "ok", ".json"]


def test_dot_files_and_names_not_ending_in_json_are_left_alone(inbox, ok_pipeline):
    for name in NOT_EVENTS:
        (inbox / name).write_text(f'{{"name": "{name}"}}')
    (inbox / "ok.json").write_text("{}")

    assert drain(inbox.parent, ok_pipeline).returncode == 0

    assert sorted(os.listdir(inbox)) == sorted(NOT_EVENTS)
    for name in NOT_EVENTS:
        assert (inbox / name).read_text() == f'{{"name": "{name}"}}', f"{name} was touched"
    assert [r["event"] for r in records(inbox.parent, "done")] == ["ok.json"]
    assert records(inbox.parent, "failed") == []


def test_a_refused_bad_name_has_no_type_in_its_record(inbox, ok_pipeline):
    (inbox / "Upper.json").write_text('{"n": 1}')
    assert drain(inbox.parent, ok_pipeline).returncode == 0
    [result] = records(inbox.parent, "failed")
    assert result["event"] == "Upper.json" and result["type"] is None
