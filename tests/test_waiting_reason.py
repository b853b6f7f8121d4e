"""Why a queued job waits, in words: the reasons the queue page gives, from the facts it reads."""

from trivialci.web.data import waiting_reason


def worker(name, state="idle", age=1.0, kind="build"):
    return {"name": name, "kind": kind, "state": state, "heartbeat_age": age, "job": None}


def test_each_reason_a_job_waits():
    assert waiting_reason("build", True, [worker("b1")], None) == \
        "dispatch is paused: state/PAUSE exists (trivialci resume)"
    assert waiting_reason("build", False, [], 3.2) == "no build worker is alive; one was asked for 3s ago and is booting"
    assert waiting_reason("build", False, [worker("b1", age=999)], None) == "no build worker is alive"
    assert waiting_reason("build", False, [worker("t1", kind="test")], None) == "no build worker is alive"
    assert waiting_reason("build", False, [worker("b1", "busy"), worker("b2", "busy")], None) == \
        "every build worker is busy (b1, b2)"
    assert waiting_reason("build", False, [worker("b1", "busy"), worker("b2")], None) == \
        "about to be handed to an idle build worker"
