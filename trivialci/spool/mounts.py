"""Which filesystem a path is on, and whether inotify can be trusted there.

inotify only sees changes made through this machine's kernel. On a network or
FUSE filesystem (NFS, SMB, sshfs, 9p...) other machines' writes are invisible
to it, so a node there must poll. The type comes from /proc/self/mountinfo.
"""

import os

NETWORK_TYPES = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "lustre",
    "ncpfs", "coda", "virtiofs", "gpfs", "beegfs", "orangefs", "ocfs2", "gfs2", "davfs",
}


def filesystem_type(path) -> str:
    """The type of the filesystem that holds `path` ("ext4", "fuse.sshfs"...), or "unknown"."""
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    for mount_point, fs_type in _mounts():
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def sees_other_machines(fs_type: str) -> bool:
    """Whether writes from other machines may land on this filesystem unseen by inotify."""
    return fs_type in NETWORK_TYPES or fs_type == "fuse" or fs_type.startswith(("fuse.", "fuseblk"))


def _mounts():
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return []
    return [parsed for parsed in map(_parse_line, lines) if parsed]


def _parse_line(line: str):
    before, separator, after = line.partition(" - ")
    fields = before.split()
    if not separator or len(fields) < 5 or not after.split():
        return None
    return _unescape(fields[4]), after.split()[0]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
