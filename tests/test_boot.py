"""Where the hub boots a worker: TRIVIALCI_BOOT_HOSTS, read by trivialci.boot (pipeline/boot_worker.py)."""

import pytest

from trivialci import TrivialCiError
from trivialci.hub import boot
from trivialci.errors import BadInput


def test_without_boot_hosts_workers_start_here():
    assert boot.host_for("build", {}) == "local"


def test_boot_hosts_name_a_host_per_kind_or_local():
    env = {"TRIVIALCI_BOOT_HOSTS": "build=ci@build1, docs = local"}
    assert boot.host_for("build", env) == "ci@build1"
    assert boot.host_for("docs", env) == "local"


def test_star_names_every_other_kind_and_none_boots_nothing():
    env = {"TRIVIALCI_BOOT_HOSTS": "build=ci@build1,*=none"}
    assert boot.host_for("docs", env) == "none"
    assert boot.boot("docs", "docs-1", env) == ("not booting docs-1: TRIVIALCI_BOOT_HOSTS says workers of kind docs "
                                                "are started on their own hosts")


def test_a_kind_without_a_host_is_not_booted_and_the_reason_says_what_to_add():
    with pytest.raises(BadInput, match=r"no host for workers of kind 'arm': add arm=\[USER@\]HOST"):
        boot.host_for("arm", {"TRIVIALCI_BOOT_HOSTS": "build=ci@build1"})


def test_a_bad_entry_is_named():
    with pytest.raises(BadInput, match="bad entry 'build' in TRIVIALCI_BOOT_HOSTS"):
        boot.host_for("build", {"TRIVIALCI_BOOT_HOSTS": "build"})


def test_an_ssh_that_fails_fails_the_boot_with_what_to_check(tmp_path):
    env = {"TRIVIALCI_BOOT_HOSTS": "build=ci@build1", "TRIVIALCI_BOOT_SSH": "false", "TRIVIALCI_SPOOL": str(tmp_path)}
    with pytest.raises(TrivialCiError, match="ssh ci@build1 exited with 1: is the host up"):
        boot.boot("build", "build-1", env)
