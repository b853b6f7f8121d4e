"""The grammar, type and range of every field of the example flow's events, one check function per grammar.

The end-to-end attacks are in test_hostile_events.py; these pin the bounds
that docs/protocol.md (section 23, "Fields of the flow") states.
"""

import math

import pytest

from trivialci.errors import BadInput
from trivialci.hub.state import HubState
from trivialci.hub.fields import check_work_required, check_work_status as check_update
from trivialci.jobs import (MAX_ATTEMPT, MAX_BUILD_TIMEOUT, MAX_PARAMS, check_attempt, check_job_id, check_kind,
                            check_params, check_reason, check_request_id, check_status, check_time, check_timeout)
from trivialci.spool.event import BadEvent, decode
from trivialci.spool.layout import check_node_name, hub_dir, under
from trivialci.worker.package import check_start_work as check_package
from trivialci.worker.package import check_stop

JOB = "20261125T025439Z-8aa937"
SHA = "a" * 40


def refused(check, value, words=""):
    with pytest.raises(BadInput) as raised:
        check(value)
    assert words in str(raised.value), str(raised.value)
    return str(raised.value)


@pytest.mark.parametrize("value", ["../x", "", "20261125T025439Z-8AA937", "20261125T025439Z-8aa937/..", 7, None,
                                   "20261125T025439Z-8aa937\n"])
def test_a_job_id_is_only_the_time_and_six_hex_digits(value):
    refused(check_job_id, value, "bad job id")


def test_a_good_job_id_passes():
    assert check_job_id(JOB) == JOB


@pytest.mark.parametrize("value", ["../../usr/bin/id", ".", "..", "", "-x", "a/b", "a" * 49, "b\u00fcild", None, 3])
def test_a_kind_is_a_short_ascii_file_name(value):
    refused(check_kind, value, "bad kind")


def test_kinds_of_up_to_48_characters_pass_and_leave_room_for_a_worker_name():
    assert check_kind("a" * 48) == "a" * 48 and check_node_name("a" * 48 + "-1")
    assert check_kind("Build_2-x") == "Build_2-x"


@pytest.mark.parametrize("value", ["../w", "hub", "", "a" * 64, None, 5, ["w1"]])
def test_a_worker_name_is_a_node_name(value):
    refused(check_node_name, value, "bad worker name")


@pytest.mark.parametrize("value", [0, -1, MAX_ATTEMPT + 1, True, "1", 1.0, None])
def test_an_attempt_is_a_positive_integer_below_the_bound(value):
    refused(check_attempt, value, "attempt")


def test_attempts_in_range_pass():
    assert check_attempt(1) == 1 and check_attempt(MAX_ATTEMPT) == MAX_ATTEMPT


@pytest.mark.parametrize("value", [0, 0.5, MAX_BUILD_TIMEOUT + 1, 1e6, math.inf, math.nan, "10", True, None])
def test_a_build_timeout_is_between_one_second_and_a_day(value):
    refused(check_timeout, value, "timeout")


def test_build_timeouts_in_range_pass():
    assert check_timeout(1) == 1.0 and check_timeout(MAX_BUILD_TIMEOUT) == MAX_BUILD_TIMEOUT


@pytest.mark.parametrize("value, words", [
    ("x", "params"), ([], "params"), ({"a b": 1}, "parameter name"), ({"1x": 1}, "parameter name"),
    ({"x": None}, "x"), ({"x": {"y": 1}}, "x"), ({"x": [1]}, "x"), ({"x": "a" * 1025}, "1024"),
    ({"x": "a\x00b"}, "control characters"), ({"x": math.inf}, "x"), ({"x": 1, "X": 2}, "upper case"),
    ({f"p{n}": n for n in range(MAX_PARAMS + 1)}, f"at most {MAX_PARAMS}"), ({"timeout": 0}, "timeout"),
])
def test_params_are_a_small_flat_object_of_named_scalars(value, words):
    refused(check_params, value, words)


def test_good_params_pass_and_none_is_no_params():
    params = {"timeout": 10, "FLAG": True, "name": "x y\tz", "ratio": 0.5}
    assert check_params(params) == params and check_params(None) == {}


@pytest.mark.parametrize("value", ["DONE", "passed", "", None, 1])
def test_a_status_is_one_of_the_words(value):
    refused(check_status, value, "status")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T00:00:00Z", "2026-11-25 00:00:00Z", 5, ""])
def test_a_time_is_utc_iso(value):
    refused(check_time, value, "time")


def test_a_reason_is_bounded_text_without_terminal_controls():
    refused(check_reason, "x" * 5000, "reason")
    refused(check_reason, "\x1b[2J", "control characters")
    refused(check_reason, 5, "reason")
    assert check_reason("exit status 1\nsee the log") == "exit status 1\nsee the log"


def test_a_request_id_is_letters_and_digits():
    refused(check_request_id, "../x", "request")
    assert check_request_id("d1381eebab2632d2") == "d1381eebab2632d2"


@pytest.mark.parametrize("body", [b'{"a": 1e999}', b'{"a": -1e999}', b'{"a": [1E400]}'])
def test_a_number_too_large_for_a_float_is_refused_like_infinity(body):
    with pytest.raises(BadEvent, match="out of range"):
        decode(body)


def test_large_integers_and_ordinary_floats_still_pass():
    assert decode(b'{"a": 1e308, "b": 123456789012345678901234567890}') == {"a": 1e308,
                                                                          "b": 123456789012345678901234567890}


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\x00b", None])
def test_under_refuses_anything_but_one_file_name(tmp_path, name):
    with pytest.raises(BadInput, match="leave"):
        under(tmp_path, "jobs", name)


def test_under_joins_file_names(tmp_path):
    assert under(tmp_path, "jobs", f"{JOB}.log") == tmp_path / "jobs" / f"{JOB}.log"


def queued(**fields):
    return {"job": JOB, "status": "QUEUED", "attempt": 1, "repo": "/r", "branch": "main", "sha": SHA,
            "kind": "build", "params": {}, "queued": "2026-11-25T00:00:00.000Z", **fields}


def test_a_work_status_with_every_field_of_the_flow_passes():
    assert check_update(queued(request="abc", worker=None)) == queued(request="abc", worker=None)
    update = {"job": JOB, "status": "PASSED", "attempt": 2, "worker": "w1", "ended": "2026-11-25T00:00:01.000Z",
              "exit_code": 0, "reason": "exit status 0", "worker_process": "123@host-a.example",
              "log_url": "http://127.0.0.1:8181/logs/" + JOB, "_timeout": 5}
    assert check_update(update) == update


@pytest.mark.parametrize("fields, words", [
    ({"evil": 1}, "evil"), ({"exit_code": "0"}, "exit_code"), ({"exit_code": 1000}, "exit_code"),
    ({"log_url": "javascript:alert(1)"}, "log_url"), ({"worker_process": "1 2"}, "worker_process"),
    ({"status": None}, "status"), ({"sha": "HEAD"}, "commit id"), ({"branch": "-x"}, "branch"),
    ({"run_time": 10 ** 400}, "duration"), ({"queue_wait": True}, "duration"),
])
def test_a_work_status_with_a_bad_field_is_refused(fields, words):
    refused(check_update, queued(**fields), words)


def test_a_work_status_without_its_job_status_or_attempt_is_refused():
    for field in ("job", "status", "attempt"):
        update = queued()
        del update[field]
        refused(check_update, update, field.replace("job", "job id"))


def test_a_work_required_is_checked_field_by_field():
    assert check_work_required({"worker": "w1", "kind": "build", "after": JOB, "attempt": 1})["worker"] == "w1"
    refused(check_work_required, {"worker": "w1"}, "bad kind")
    refused(check_work_required, {"worker": "w1", "kind": "build", "after": "x"}, "bad job id")


def test_a_status_for_a_job_the_hub_never_queued_changes_nothing(spool):
    hub_dir(spool).create()
    state = HubState(spool)
    refused(state.apply_status, {"job": JOB, "status": "BUILDING", "attempt": 1, "worker": "w1"}, "never queued")
    assert state.job(JOB) is None


def start_work(**fields):
    return {"job": JOB, "repo": "/r", "branch": "main", "sha": SHA, "kind": "build", "attempt": 1, "params": {},
            "queued": "2026-11-25T00:00:00.000Z", "timeout": 60.0, "_timeout": 660.0, **fields}


def test_a_start_work_package_passes_and_gets_its_defaults():
    assert check_package(start_work(), kind="build") == start_work()
    bare = start_work()
    for field in ("params", "queued", "timeout"):
        del bare[field]
    assert check_package(bare) == {**bare, "params": {}, "queued": None, "timeout": 3600.0}


@pytest.mark.parametrize("fields, words", [
    ({"job": "../x"}, "bad job id"), ({"kind": "../../usr/bin/id"}, "bad kind"), ({"timeout": 1e6}, "timeout"),
    ({"params": "x"}, "params"), ({"attempt": 0}, "attempt"), ({"sha": None}, "commit id"),
])
def test_a_start_work_package_with_a_bad_field_is_refused(fields, words):
    refused(lambda package: check_package(package, kind="build"), start_work(**fields), words)


def test_a_start_work_with_a_field_it_does_not_know_is_refused():
    refused(check_package, start_work(evil="x"), "evil")


def test_trust_is_kept_on_the_way_and_only_json_true_is_trusted():
    assert check_package(start_work(trusted="false"))["trusted"] is False
    assert check_package(start_work(trusted=True))["trusted"] is True
    assert "trusted" not in check_package(start_work())
    approval = {"by": "ann", "secrets": "yes", "sha": SHA, "at": "2026-11-25T00:00:00.000Z"}
    assert check_update(queued(trusted=False, approval=approval))["approval"] == {**approval, "secrets": False}
    refused(check_update, queued(approval=["secrets"]), "approval")
    refused(check_update, queued(approval={"by": "x" * 201}), "approver")
    refused(check_update, queued(approval={"by": "ann", "evil": 1}), "evil")


def test_a_start_work_for_another_kind_is_refused():
    refused(lambda package: check_package(package, kind="build"), start_work(kind="deploy"), "kind deploy")


@pytest.mark.parametrize("status", ["PASSED", ["CANCELLED"], {"status": "CANCELLED"}, None, 1])
def test_a_job_is_stopped_only_as_cancelled_or_superseded(status):
    refused(lambda value: check_stop(value, "a reason"), status, "CANCELLED or SUPERSEDED")
