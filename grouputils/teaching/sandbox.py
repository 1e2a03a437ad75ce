"""Run a learner's code where it sees only its own folder, the environment and the data.

Autograding executes learners' notebooks (and the scripts they write) on the
instructor's account, inside the course folder that also holds ``source/``
(the solutions and hidden tests), the gradebook and every other learner's
submission. :func:`sandbox_command` wraps a command in Debian's
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, the
unprivileged sandbox Flatpak uses) so that the process sees a file system made
of:

* the operating system (``/usr``, ``/bin``, ``/lib*``, ``/etc``) and the Python
  environment (``sys.prefix``, ``sys.base_prefix``, the ``grouputils``
  package), **read-only**;
* the course data (``GROUPUTILS_DATA``, or the samples inside the package),
  read-only;
* its working folder (the submission's own folder), writable, at its real
  path, so relative and absolute paths inside it still work;
* a fresh, empty ``/tmp``, ``HOME`` and ``/dev/shm``, and its own ``/proc``
  (own PID namespace: no other process is visible).

Nothing else exists: ``../../source``, ``gradebook.db`` and
``../../<other student>`` are simply not there. A path that contains the
working folder (the course folder itself, say) is never bound, since it would
expose the folder's neighbours. The network namespace is shared, because the
kernel talks to nbgrader over localhost sockets.

:class:`SandboxedKernelManager` is a jupyter_client kernel manager whose
kernels are launched this way; nbgrader uses it with
``c.Execute.kernel_manager_class = "grouputils.teaching.sandbox.SandboxedKernelManager"``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "SandboxError",
    "bwrap_path",
    "default_read_only",
    "sandbox_command",
    "SandboxedKernelManager",
]

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
_HOME = "/tmp/home"


class SandboxError(RuntimeError):
    """The sandbox cannot be set up (``bwrap`` missing, or refused by the kernel)."""


def bwrap_path() -> str:
    """Path of the ``bwrap`` executable.

    Raises
    ------
    SandboxError
        If bubblewrap is not installed.
    """
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxError(
            "bubblewrap is not installed: apt-get install bubblewrap (the bwrap command)"
        )
    return found


def default_read_only() -> list[Path]:
    """What a sandboxed learner's process may read: the system, this Python environment, the data.

    Returns
    -------
    list of Path
        Existing system folders, ``sys.prefix``, ``sys.base_prefix``,
        ``sys.exec_prefix``, the folder of the ``grouputils`` package (an
        editable install lives outside ``site-packages``) and the course data
        folder (``GROUPUTILS_DATA`` when set).
    """
    paths = [Path(d) for d in _SYSTEM_DIRS]
    paths += [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    for name in ("grouputils", "grouputils.data_samples"):  # the package and its shipped samples
        spec = importlib.util.find_spec(name)
        if spec is not None:
            paths += [Path(p) for p in (spec.submodule_search_locations or [])]
    data = os.environ.get("GROUPUTILS_DATA")
    if data:
        paths.append(Path(data))
    return [p for p in paths if p.exists()]


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def sandbox_command(
    cmd: Sequence[str],
    workdir: str | Path,
    *,
    read_only: Iterable[str | Path] | None = None,
    writable_workdir: bool = True,
    network: bool = True,
) -> list[str]:
    """``cmd`` wrapped in ``bwrap`` so that it sees only ``workdir``, the environment and the data.

    Parameters
    ----------
    cmd : sequence of str
        The command (e.g. a kernel's launch command).
    workdir : str or Path
        The only folder of the course the command sees; it starts there.
    read_only : iterable of paths, optional
        Folders or files bound read-only at their own paths (default:
        :func:`default_read_only`). Paths that do not exist are skipped, and so
        is any path that contains ``workdir`` (it would expose its neighbours).
    writable_workdir : bool
        Bind ``workdir`` writable (a notebook writes its outputs there); False
        binds it read-only (a script being checked must not change the
        files it is checked against).
    network : bool
        Share the network (a kernel must reach nbgrader over localhost);
        False gives the command a network of its own with only a loopback.

    Returns
    -------
    list of str
        The ``bwrap ... -- cmd`` argument list.

    Raises
    ------
    SandboxError
        If bubblewrap is missing.
    """
    workdir = Path(workdir).resolve()
    args = [
        bwrap_path(),
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/dev/shm",
        "--tmpfs",
        "/tmp",
    ]
    seen: set[Path] = set()
    links: list[str] = []
    for p in default_read_only() if read_only is None else read_only:
        p = Path(p).absolute()
        if not p.exists():
            continue
        real = p.resolve()
        if _contains(p, workdir) or _contains(real, workdir):
            continue
        if p != real and p.is_symlink() and p.parent.resolve() == p.parent:
            links += ["--symlink", os.readlink(p), str(p)]  # /bin -> usr/bin stays a link
        if not any(_contains(done, real) for done in seen):
            seen.add(real)
            args += ["--ro-bind", str(real), str(real)]
    args += links
    args += [
        "--bind" if writable_workdir else "--ro-bind",
        str(workdir),
        str(workdir),
        "--dir",
        _HOME,
        "--setenv",
        "HOME",
        _HOME,
        "--setenv",
        "TMPDIR",
        "/tmp",
        "--setenv",
        "MPLCONFIGDIR",
        f"{_HOME}/.matplotlib",
        # ipykernel exits when its parent's pid is gone; in the new PID namespace it cannot see it,
        # and --die-with-parent does that job
        "--unsetenv",
        "JPY_PARENT_PID",
        "--chdir",
        str(workdir),
        "--",
    ]
    return args + list(cmd)


try:  # the kernel manager needs jupyter_client (installed with nbgrader); the rest does not
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import List, Unicode
except ImportError:  # pragma: no cover - only without the course extras
    AsyncKernelManager = None  # type: ignore[assignment,misc]

if AsyncKernelManager is not None:

    class SandboxedKernelManager(AsyncKernelManager):
        """A kernel manager that launches every kernel inside :func:`sandbox_command`.

        The kernel's working folder (nbgrader: the submission's folder under
        ``autograded/``) is its only writable folder; its connection file is
        bound read-only so it can reach nbgrader.
        """

        read_only_paths = List(
            Unicode(),
            help="Extra folders the kernel may read (besides the system, environment and data).",
        ).tag(config=True)

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: object) -> None:
            workdir = Path(str(kw.get("cwd") or os.getcwd()))
            extra = [
                *default_read_only(),
                *map(Path, self.read_only_paths),
                Path(self.connection_file),
            ]
            wrapped = sandbox_command(kernel_cmd, workdir, read_only=extra)
            self.log.info("sandboxed kernel in %s", workdir)
            await super()._async_launch_kernel(wrapped, **kw)
