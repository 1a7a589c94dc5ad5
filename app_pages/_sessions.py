"""Sessions of a shared server: one temporary folder per browser session, and one reaper thread that ends the
training jobs and removes the folders of sessions that have gone.

- A session's key is Streamlit's session id (``get_script_run_ctx().session_id``). Under ``AppTest`` every
  run has the same id ("test session id") and no real ``Runtime``, so there the key is ``local-<uuid>``, drawn
  once per session and kept in ``st.session_state["session_key"]``.
- Its folder is ``<tempdir>/frcnn-sessions/<pid>/<key>/`` (the root is ``FRCNN_SESSIONS_DIR`` when set):
  extracted datasets, training outputs and uploaded weights live there and nowhere else. The ``<pid>`` level
  keeps two servers on one machine apart: at start the reaper removes the folders of processes that no longer
  run, and at exit this process's own.
- Session end: Streamlit's ``Runtime.instance().is_active_session(key)`` (thread-safe, its docs say) is True
  while the session's websocket is connected. A disconnected session can reconnect to its state for
  ``server.disconnectedSessionTTL`` seconds (120 by default); after that Streamlit forgets it. So a session
  the runtime has not seen active for that long has ended: the reaper discards its jobs
  (:meth:`frcnn.jobs.JobQueue.discard_owner`) and removes its folder. It sweeps every ``SWEEP_SECONDS``: a
  closed tab is cleaned up 120-125 s later with the defaults.
- The reaper also touches the jobs of connected sessions (a job runs while its tab is open, on any page) and
  applies the queue's idle rule to the others (:meth:`frcnn.jobs.JobQueue.reap_idle`).
- Without a real runtime (``AppTest``, ``python app.py``) no session can be told to have ended: they all
  stay alive, and tests end one with :func:`end_session` or a :class:`Reaper` with their own ``is_alive``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from frcnn import FrcnnError
from frcnn.jobs import JobQueue, server_queue

SESSIONS_ROOT = Path(os.environ.get("FRCNN_SESSIONS_DIR") or Path(tempfile.gettempdir()) / "frcnn-sessions")
SWEEP_SECONDS = 5.0  # how often the reaper looks for sessions that have gone
KEY = "session_key"  # st.session_state key of this session's key


def process_root() -> Path:
    """This server process's folder of session folders."""
    return SESSIONS_ROOT / str(os.getpid())


def _real_runtime() -> Runtime | None:
    """Streamlit's runtime of a served app; None under AppTest (a stand-in) or without one."""
    try:
        runtime = Runtime.instance()
    except RuntimeError:
        return None
    return runtime if type(runtime) is Runtime else None


def is_session_alive(key: str) -> bool:
    """True while the runtime has the session connected; always True when there is no runtime to ask."""
    runtime = _real_runtime()
    return True if runtime is None else runtime.is_active_session(key)


def session_key() -> str:
    """This session's key: its Streamlit session id (or, without a real runtime, an id of its own). It names
    the session's folder and owns its training jobs. Starts the reaper on first use."""
    _server_reaper()
    key = st.session_state.get(KEY)
    if key is None:
        ctx = get_script_run_ctx()
        key = ctx.session_id if ctx is not None and _real_runtime() is not None else f"local-{uuid.uuid4().hex}"
        st.session_state[KEY] = key
    return key


def _folder(root: Path, key: str) -> Path:
    if not key or key in (".", "..") or "/" in key or "\\" in key:
        raise FrcnnError(f"not a session key: {key[:40]!r}")
    return root / key


def session_dir() -> Path:
    """This session's temporary folder (created on first use, removed when the session ends)."""
    path = _folder(process_root(), session_key())
    path.mkdir(parents=True, exist_ok=True)
    return path


def session_file(name: str, data: bytes) -> Path:
    """``data`` written as ``name`` in this session's folder (kept if that file is already there: name files
    by their content's digest); ``name`` is a plain file name."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise FrcnnError(f"not a plain file name: {name[:40]!r}")
    path = session_dir() / name
    if not path.is_file():
        part = path.with_name(f".{name}.{uuid.uuid4().hex[:8]}.part")
        part.write_bytes(data)
        part.replace(path)  # whole or not at all, should two reruns write it at once
    return path


def end_session(key: str, queue: JobQueue | None = None, root: Path | None = None) -> None:
    """What the reaper does to a session that has gone: its jobs discarded, its folder removed."""
    (queue or server_queue()).discard_owner(key)
    shutil.rmtree(_folder(root or process_root(), key), ignore_errors=True)


def remove_stale(base: Path = SESSIONS_ROOT) -> list[Path]:
    """Remove the folders of server processes that no longer run (a crash or a kill left them)."""
    removed = []
    for folder in base.glob("*") if base.is_dir() else ():
        if folder.is_dir() and not (folder.name.isdigit() and _pid_runs(int(folder.name))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Reaper:
    """Ends the sessions that ``is_alive`` has said are gone for ``grace`` seconds: their jobs in ``queue``
    and their folders under ``root``. :meth:`sweep` is one pass; :meth:`start` runs it every ``every``
    seconds in a daemon thread."""

    def __init__(self, queue: JobQueue, root: Path, is_alive: Callable[[str], bool], grace: float,
                 every: float = SWEEP_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.queue, self.root, self.is_alive, self.grace, self.every = queue, root, is_alive, grace, every
        self._clock = clock
        self._gone_since: dict[str, float] = {}  # key -> when first seen gone
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="frcnn-session-reaper", daemon=True)

    def keys(self) -> set[str]:
        """The sessions known here: owners of the queue and folders under the root."""
        folders = {p.name for p in self.root.iterdir() if p.is_dir()} if self.root.is_dir() else set()
        return self.queue.owners() | folders

    def sweep(self) -> list[str]:
        """One pass; returns the keys of the sessions it ended."""
        now, ended = self._clock(), []
        for key in sorted(self.keys()):
            if self.is_alive(key):
                self._gone_since.pop(key, None)
                self.queue.touch(key)  # an open tab keeps its job, whichever page it shows
                continue
            if now - self._gone_since.setdefault(key, now) >= self.grace:
                end_session(key, self.queue, self.root)
                self._gone_since.pop(key, None)
                ended.append(key)
        self.queue.reap_idle()
        return ended

    def _loop(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the reaper must outlive one bad pass
                traceback.print_exc()

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()


def _at_exit(reaper: Reaper) -> None:
    reaper.stop()
    reaper.queue.shutdown()
    shutil.rmtree(reaper.root, ignore_errors=True)


@st.cache_resource(show_spinner=False)
def _server_reaper() -> Reaper:
    """The one reaper of this server process, started on the first session's first use of this module."""
    remove_stale()
    grace = float(st.get_option("server.disconnectedSessionTTL"))
    reaper = Reaper(server_queue(), process_root(), is_session_alive, grace).start()
    atexit.register(_at_exit, reaper)
    return reaper
