#!/usr/bin/python
"""Ansible module: hand what lies in the daemon's writable directories to the daemon's user.

Records a root-run deploy_job.yml wrote, or the logs, locks and run directories of a daemon that ran as
root before, must become the daemon's own or it cannot read or write them. Root walks directories the
daemon's user can change, so the walk cannot follow anything that user planted: each top directory is
reached from ``/`` one component at a time with O_NOFOLLOW (a link anywhere in its path is refused),
every entry below is opened relative to its directory's descriptor with O_NOFOLLOW and changed through
that descriptor (fchown), a symlink is never followed, only directories and regular files are touched,
and a regular file with more than one hard link is left alone (it may be a link to a file elsewhere).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: khaos_handover
short_description: Give the files in the daemon's directories to its user, without following links
options:
  paths:
    type: list
    elements: path
    required: true
    description: Directories (absolute, existing, no link anywhere in their path); they and their contents are handed over.
  owner: {type: str, required: true, description: The daemon's user.}
  group: {type: str, required: true, description: The daemon's group.}
"""

import errno
import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """A top directory whose path is not plain: relative, or with a link or a file in it."""


def open_dir(path: str) -> int:
    """A descriptor of the directory ``path``, reached from / without following a link at any level."""
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        raise Refused(f"{path} is not a plain absolute path")
    fd = os.open("/", _OPEN | os.O_DIRECTORY)
    for i, name in enumerate(parts):
        try:
            nxt = os.open(name, _OPEN | os.O_DIRECTORY, dir_fd=fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link (O_NOFOLLOW) or not a directory
                raise Refused(f"/{'/'.join(parts[: i + 1])} is a link or not a directory: refusing") from None
            raise
        finally:
            os.close(fd)
        fd = nxt
    return fd


def handover(path: str, uid: int, gid: int, check: bool) -> list[str]:
    """Entries below ``path`` (and ``path`` itself) changed to uid:gid; the walk never leaves the tree."""
    handed: list[str] = []
    top = open_dir(path)
    try:
        _give(top, path, uid, gid, check, handed)
        _walk(top, path, uid, gid, check, handed)
    finally:
        os.close(top)
    return handed


def _give(fd: int, name: str, uid: int, gid: int, check: bool, handed: list[str]) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (uid, gid):
        if not check:
            os.fchown(fd, uid, gid)
        handed.append(name)


def _walk(dfd: int, where: str, uid: int, gid: int, check: bool, handed: list[str]) -> None:
    for name in os.listdir(dfd):
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue  # a link, a fifo, a socket: not followed, not touched
            fd = os.open(name, _OPEN | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0), dir_fd=dfd)
        except OSError:  # gone, or swapped for a link since the listing (ELOOP): leave it
            continue
        try:
            st = os.fstat(fd)  # what was opened, not what the name pointed to before
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                _give(fd, f"{where}/{name}", uid, gid, check, handed)
            elif stat.S_ISDIR(st.st_mode):
                _give(fd, f"{where}/{name}", uid, gid, check, handed)
                _walk(fd, f"{where}/{name}", uid, gid, check, handed)
        finally:
            os.close(fd)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        uid, gid = pwd.getpwnam(p["owner"]).pw_uid, grp.getgrnam(p["group"]).gr_gid
    except KeyError as e:
        module.fail_json(msg=f"no such user or group: {e}")
    handed: list[str] = []
    for path in p["paths"]:
        try:
            handed += handover(path, uid, gid, module.check_mode)
        except Refused as e:
            module.fail_json(msg=f"cannot hand {path} to {p['owner']}: {e}")
        except OSError as e:
            module.fail_json(msg=f"cannot hand {path} to {p['owner']}: {e.strerror or e}")
    module.exit_json(changed=bool(handed), handed=len(handed), examples=handed[:20])


if __name__ == "__main__":
    main()
