"""The simulated hosts of tests/hosts.py: separate hostnames, ssh between them, sshfs mounts, partitions."""

import subprocess
import sys

from conftest import wait_for
from hosts import hosts, is_sshfs_mount  # noqa: F401

LISTDIR = "import os, sys; print(os.listdir(sys.argv[1]))"


def listdir(host, path):
    """os.listdir(path) in a child process of `host`, so that a hung mount cannot hang the test."""
    return host.run([sys.executable, "-c", LISTDIR, path], timeout=30)


def test_a_worker_reaches_the_hub_over_ssh_and_hosts_have_their_own_hostnames(hosts):
    network = hosts(workers=2)
    w1, w2 = network.workers
    assert [host.run(["hostname"]).stdout.strip() for host in (network.hub, w1, w2)] == ["hub", "w1", "w2"]
    ssh = w1.run([*network.ssh_command().split(), f"root@{network.hub.address_for(w1)}", "hostname"], timeout=30)
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "hub"), ssh.stderr
    assert w2.connects(network.hub.address_for(w2), 22)
    assert not w1.connects(network.hub.address_for(w2), 22), "each worker only reaches the hub over its own link"


def test_a_mount_shows_the_hubs_files_both_ways_and_close_removes_it(hosts, tmp_path):
    network = hosts()
    spool = tmp_path / "spool"
    spool.mkdir()
    mount = network.mount(network.workers[0], spool, tmp_path / "mnt")
    assert is_sshfs_mount(mount)
    assert any(line.split(" - ")[1].startswith("fuse.sshfs ") and f" {mount} " in line
               for line in open("/proc/self/mountinfo"))
    (spool / "from-hub").write_text("hub")
    assert (mount / "from-hub").read_text() == "hub"
    (mount / "from-worker").write_text("worker")
    assert (spool / "from-worker").read_text() == "worker"

    network.close()
    network.close()
    assert not is_sshfs_mount(mount)
    assert list(mount.iterdir()) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [host.netns for host in network.hosts if host.netns in namespaces.split()]


def test_a_partitioned_mount_fails_with_eio_and_works_again_after_heal(hosts, tmp_path):
    network = hosts()
    worker = network.workers[0]
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "job").write_text("")
    mount = network.mount(worker, spool, tmp_path / "mnt")
    assert listdir(worker, mount).stdout.strip() == "['job']"

    network.partition(worker)
    failed = wait_for(lambda: (result := listdir(worker, mount)).returncode != 0 and result, timeout=30,
                      message="a listdir through the mount to fail during the partition")
    assert "Input/output error" in failed.stderr, failed

    network.heal(worker)
    wait_for(lambda: listdir(worker, mount).stdout.strip() == "['job']", timeout=30,
             message="the mount to work again after heal")


def test_the_s3_host_stays_reachable_from_a_worker_cut_off_the_hub(hosts, tmp_path):
    network = hosts(workers=2, s3=True)
    s3 = network.s3
    s3.popen([sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "8000"], cwd=tmp_path,
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: network.hub.connects(s3.address_for(network.hub), 8000), message="the server in the s3 host")
    for worker in network.workers:
        assert worker.connects(s3.address_for(worker), 8000)

    w1 = network.workers[0]
    network.partition(w1)
    assert not w1.connects(network.hub.address_for(w1), 22)
    assert w1.connects(s3.address_for(w1), 8000)
    network.heal(w1)
    assert w1.connects(network.hub.address_for(w1), 22)
