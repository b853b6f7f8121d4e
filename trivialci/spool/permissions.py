"""Who may read what TrivialCi writes: the user that runs it, or one group that shares the spool.

Private (the default). Every command starts with umask 077, whatever umask it
was started with: what it and the scripts it runs create (events, logs, state,
heartbeats, locks, mirrors, worktrees, artifacts, store files) is 0600 or
0700, readable by this user alone.

Shared with a group (`--group NAME`, or TRIVIALCI_GROUP=NAME, which the
commands pass on to the scripts and workers they start). umask 007, and the
roots a node owns (the spool, its --workdir, a directory store) belong to the
group and have the setgid bit, so that every directory made below them does
too and every file made below them belongs to the group: the group reads and
writes, others get nothing. 007 rather than 027: the members of the group
write into inboxes and tmp/ (a worker run by another user, a post-receive
hook run by the git server's user), which takes group write on directories,
and one umask serves files and directories alike; a member who may rename and
remove every entry of a directory gains nothing from a file it may not write.

An atomically written file (an event, a state file, a heartbeat) is created
0600, or 0640 in a directory with the setgid bit, whatever the writer's umask:
an emitter that never heard of the group (a hook with umask 077) still writes
events the hub can read, and one with umask 000 no world-writable ones.
Directories made by `make_dirs` are 0700, or 02770 under a setgid parent.
"""

import grp
import os
import stat
from pathlib import Path

from ..errors import BadInput, SpoolUnavailable

GROUP_ENV = "TRIVIALCI_GROUP"
PRIVATE_UMASK = 0o077
SHARED_UMASK = 0o007
PRIVATE_FILE, SHARED_FILE = 0o600, 0o640
PRIVATE_DIR, SHARED_DIR = 0o700, 0o2770


def restrict(group: str | None = None) -> int | None:
    """Set this process's umask: private, or shared with `group` (exported for children); the group's id or None."""
    if not group:
        os.umask(PRIVATE_UMASK)
        return None
    gid = group_id(group)
    os.umask(SHARED_UMASK)
    os.environ[GROUP_ENV] = group
    return gid


def group_id(group: str) -> int:
    """The id of `group` (a name or a number), which this user must belong to."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        if not group.isdigit():
            raise BadInput(f"no group {group!r} on this host: create it (groupadd {group}) or name another "
                           f"with --group or {GROUP_ENV}") from None
        gid = int(group)
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise BadInput(f"this user is not in the group {group!r}, so it cannot share files with it: add it "
                       f"(usermod -aG {group} USER, then log in again) or name a group it is in")
    return gid


def share_roots(*roots) -> None:
    """In shared mode (TRIVIALCI_GROUP), make each root a directory of the group with the setgid bit."""
    group = os.environ.get(GROUP_ENV)
    if not group:
        return
    gid = group_id(group)
    for root in roots:
        if root:
            share_root(Path(root), gid, group)


def share_root(root: Path, gid: int, group: str) -> None:
    """`root` (made if missing) owned by group `gid`, group-writable, setgid: what is made below inherits it."""
    try:
        make_dirs(root)
        info = os.stat(root)
        if info.st_gid == gid and info.st_mode & 0o2070 == 0o2070:
            return
        os.chown(root, -1, gid)
        os.chmod(root, stat.S_IMODE(info.st_mode) | 0o2070)
    except OSError as error:
        raise SpoolUnavailable(f"cannot share {root} with the group {group}: {error.strerror or error}; as its "
                               f"owner run `chgrp {group} {root} && chmod g+rwxs {root}`") from None


def make_dirs(path) -> None:
    """Like mkdir -p, but each directory made is 0700, or 02770 under a setgid parent, whatever the umask."""
    path = Path(path)
    if path.is_dir():
        return
    make_dirs(path.parent)
    mode = SHARED_DIR if is_shared(path.parent) else PRIVATE_DIR
    try:
        os.mkdir(path, mode & 0o777)
    except FileExistsError:
        return  # made by another process meanwhile; a file there is refused by the caller's next step
    os.chmod(path, mode)


def dir_mode(parent) -> int:
    """The mode to make a directory with in `parent` (a path or descriptor): 0770 if it is shared, else 0700."""
    return SHARED_DIR & 0o777 if is_shared(parent) else PRIVATE_DIR


def file_mode(directory) -> int:
    """The mode of a file written in `directory` (a path or descriptor): 0640 if it is shared (setgid), else 0600."""
    return SHARED_FILE if is_shared(directory) else PRIVATE_FILE


def is_shared(directory) -> bool:
    try:
        return bool(os.stat(directory).st_mode & stat.S_ISGID)
    except OSError:
        return False
