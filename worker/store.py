"""The artifact store: job records, uploads, checkpoints and outputs under one root.

Layout (keys are '/'-separated paths relative to the root)::

    jobs/<job id>/job.json            the job record (see `worker.jobs`)
    jobs/<job id>/cancel-requested    the cancel marker
    jobs/<job id>/inputs/...          uploaded images
    jobs/<job id>/...                 what the job writes (adapter, previews, images, log)

The root is a local folder (the default: `$STYLEDROP_STORE`, else `runs/store` under the
current directory) or any fsspec URL that every machine can reach (`s3://bucket/styledrop`,
`gcs://...`, `memory://...`). Every key is checked: job ids match `JOB_ID_PATTERN` and
every path part is a plain name, so nothing can address a file outside the root.

All writes are atomic: a local file is written under a temporary name and renamed; on a
remote file system it is written under a temporary name and then moved.

Jobs run on local files. With a local store a job works in its store folder directly.
With a remote store it works in a local cache folder (`$STYLEDROP_CACHE`, default
`~/.cache/styledrop/<store hash>`): `pull(job_id)` brings the job's files (and its newest
checkpoint) into the cache, `push(job_id)` sends new or changed files back. Checkpoints
are pushed as a snapshot folder followed by a pointer file written last
(`checkpoint.json`), so a worker on another machine never resumes from half a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STORE_ENV = "STYLEDROP_STORE"
CACHE_ENV = "STYLEDROP_CACHE"
DEFAULT_STORE = "runs/store"
JOBS = "jobs"
JOB_FILE = "job.json"
CANCEL_FILE = "cancel-requested"
JOB_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# One path part: a plain file or folder name; no "..", no hidden or temporary files.
PART_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+-]{0,127}$")

# The training checkpoint folder written by `styledrop.train_checkpoint` (and its staging
# names), mirrored remotely as snapshots + a pointer.
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_LOCAL_NAMES = (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.partial", f"{CHECKPOINT_DIR}.old")
CHECKPOINT_POINTER = "checkpoint.json"
CHECKPOINT_SNAPSHOTS = "checkpoints"
# Files of a job folder that live only in the store (never pulled into or pushed from a cache).
STORE_ONLY = (JOB_FILE, CANCEL_FILE, CHECKPOINT_POINTER, CHECKPOINT_SNAPSHOTS)
SYNC_STATE = ".synced.json"
LOCK_FILE = ".lock"
FILE_MODE = 0o600  # store files and folders are this user's only (the service's user)
DIR_MODE = 0o700


class StoreKeyError(ValueError):
    """A key or file name that the store refuses (it could escape the root, or is malformed)."""


class InvalidJobIdError(StoreKeyError):
    """A job id that does not match `JOB_ID_PATTERN`."""


def validate_job_id(job_id: object) -> str:
    """Returns `job_id` if it is a valid job id.

    Raises:
        InvalidJobIdError: when it is not a string of 1-64 lowercase letters, digits, '-' or
            '_' starting with a letter or digit (so never '..', a slash or an absolute path).
    """
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidJobIdError(
            f"Invalid job id {job_id!r}: job ids are 1-64 lowercase letters, digits, '-' or"
            " '_', starting with a letter or digit (as printed by `styledrop jobs submit`)."
        )
    return job_id


def validate_key(key: object) -> str:
    """Returns `key` if every '/'-separated part is a plain name.

    Raises:
        StoreKeyError: for empty keys, absolute paths, backslashes, '.', '..' or hidden names.
    """
    if not isinstance(key, str) or not key:
        raise StoreKeyError(f"Invalid store path {key!r}: give a relative path such as jobs/ID.")
    if key.startswith("/") or "\\" in key or "://" in key:
        raise StoreKeyError(f"Invalid store path {key!r}: it must be relative to the store root.")
    for part in key.split("/"):
        if not PART_PATTERN.fullmatch(part):
            raise StoreKeyError(
                f"Invalid store path {key!r}: the part {part!r} is not a plain file name"
                " (letters, digits, '.', '_', '-', not starting with '.')."
            )
    return key


def job_key(job_id: str, *parts: str) -> str:
    """The store key of a job's folder, or of a file in it (`job_key(id, "inputs", name)`)."""
    key = "/".join([JOBS, validate_job_id(job_id), *parts])
    return validate_key(key)


def _read_step(checkpoint: Path) -> int:
    """The step of a local checkpoint folder, or -1 when it has none."""
    try:
        return int(json.loads((checkpoint / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _private_dir(path: Path) -> None:
    """Creates `path` and its missing parents as folders only this user can open."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)


def _atomic_write_local(path: Path, data: bytes) -> None:
    _private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Store:
    """Job files under a local folder or an fsspec URL.

    Args:
        root: Folder or URL (default: `$STYLEDROP_STORE`, else `runs/store`).
        cache_dir: Local working folder for jobs of a remote store (default:
            `$STYLEDROP_CACHE`, else `~/.cache/styledrop/store-<hash of the URL>`).
        force_remote: Treat a local folder or `file://` URL as remote (every access through
            fsspec, jobs working in the cache): how several machines sharing a network
            file system should run, and how tests exercise the remote path.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        force_remote: bool = False,
    ):
        root = str(root if root is not None else os.environ.get(STORE_ENV) or DEFAULT_STORE)
        self.url = root
        scheme = root.split("://", 1)[0] if "://" in root else ""
        self.is_local = scheme in ("", "file") and not force_remote
        self.fs: Any = None
        if self.is_local:
            local = root.split("://", 1)[1] if scheme else root
            self.root = Path(local).expanduser().resolve()
            _private_dir(self.root)
            self.cache = self.root
        else:
            import fsspec

            self.fs, path = fsspec.core.url_to_fs(root)
            self._base = path.rstrip("/") or "/"
            self.fs.makedirs(self._base, exist_ok=True)
            digest = hashlib.sha256(root.encode()).hexdigest()[:12]
            default_cache = Path.home() / ".cache" / "styledrop" / f"store-{digest}"
            cache = cache_dir or os.environ.get(CACHE_ENV) or default_cache
            self.cache = Path(cache).expanduser().resolve()
            _private_dir(self.cache)

    def __repr__(self) -> str:
        kind = "local" if self.is_local else "remote"
        return f"Store({self.url!r}, {kind})"

    # ----------------------------------------------------------------------------------------
    # Addressing.

    def _local(self, key: str) -> Path:
        path = self.root / validate_key(key)
        if not path.resolve().is_relative_to(self.root):
            raise StoreKeyError(f"{key!r} resolves outside the store root {self.root}.")
        return path

    def _remote(self, key: str) -> str:
        return f"{self._base.rstrip('/')}/{validate_key(key)}"

    def _cached(self, key: str) -> Path:
        return self.cache / validate_key(key)

    # ----------------------------------------------------------------------------------------
    # Files.

    def exists(self, key: str) -> bool:
        """Whether a file or folder exists at `key`."""
        if self.is_local:
            return self._local(key).exists()
        path = self._remote(key)
        self.fs.invalidate_cache(path)  # listings may be cached (object stores)
        return bool(self.fs.exists(path))

    def read_bytes(self, key: str) -> bytes:
        """The file's bytes. Raises FileNotFoundError when it does not exist."""
        if self.is_local:
            return self._local(key).read_bytes()
        try:
            return self.fs.cat_file(self._remote(key))
        except FileNotFoundError:
            raise
        except (OSError, KeyError) as error:
            raise FileNotFoundError(f"{self.url}: no file {key}") from error

    def write_bytes(self, key: str, data: bytes) -> None:
        """Writes a file atomically (readers see the old or the new content, never a mix)."""
        if self.is_local:
            _atomic_write_local(self._local(key), data)
            return
        target = self._remote(key)
        parent, name = target.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(tmp, data)
        self._move_into_place(tmp, target)

    def _move_into_place(self, tmp: str, target: str) -> None:
        try:
            self.fs.mv(tmp, target)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise

    def read_json(self, key: str) -> Any:
        """Parses a JSON file. Raises FileNotFoundError when it does not exist."""
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, value: Any) -> None:
        """Writes a JSON file atomically."""
        self.write_bytes(key, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())

    def delete(self, key: str) -> None:
        """Deletes a file or a folder with its content (nothing happens if it is missing)."""
        if self.is_local:
            path = self._local(key)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._remote(key), recursive=True)

    def list_names(self, key: str) -> list[str]:
        """Names of the files and folders directly under `key` (valid names only, sorted)."""
        if self.is_local:
            folder = self._local(key)
            names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        else:
            path = self._remote(key)
            self.fs.invalidate_cache(path)
            try:
                entries = self.fs.ls(path, detail=False)
            except FileNotFoundError:
                entries = []
            names = [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]
        return sorted(name for name in set(names) if PART_PATTERN.fullmatch(name))

    def list_files(self, key: str) -> dict[str, int]:
        """Every file under the folder `key`: {path relative to it: size in bytes}.

        Hidden and temporary files (names starting with '.') are left out.
        """
        found: dict[str, int] = {}
        if self.is_local:
            folder = self._local(key)
            for path in folder.rglob("*") if folder.is_dir() else ():
                rel = path.relative_to(folder).as_posix()
                if path.is_file() and all(PART_PATTERN.fullmatch(p) for p in rel.split("/")):
                    found[rel] = path.stat().st_size
            return dict(sorted(found.items()))
        base = self._remote(key)
        self.fs.invalidate_cache(base)
        try:
            entries = self.fs.find(base, withdirs=False, detail=True)
        except FileNotFoundError:
            entries = {}
        for path, info in entries.items():
            rel = str(path)[len(base.rstrip("/")) :].strip("/")
            if rel and all(PART_PATTERN.fullmatch(p) for p in rel.split("/")):
                found[rel] = int(info.get("size") or 0)
        return dict(sorted(found.items()))

    def fetch(self, key: str) -> Path:
        """A local path holding the file at `key` (downloaded into the cache when remote).

        Raises:
            FileNotFoundError: when the store has no such file.
        """
        if self.is_local:
            path = self._local(key)
            if not path.is_file():
                raise FileNotFoundError(f"{self.url}: no file {key}")
            return path
        target = self._cached(key)
        remote = self._remote(key)
        size = self.fs.size(remote)
        if not target.is_file() or target.stat().st_size != size:
            self._download(remote, target)
        return target

    def _download(self, remote: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.fs.get_file(remote, str(tmp))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _upload(self, path: Path, key: str) -> None:
        target = self._remote(key)
        parent, name = target.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.put_file(str(path), tmp)
        self._move_into_place(tmp, target)

    # ----------------------------------------------------------------------------------------
    # Job folders.

    def job_dir(self, job_id: str) -> Path:
        """The local working folder of a job (created): its store folder, or its cache folder."""
        folder = (self.root if self.is_local else self.cache) / job_key(job_id)
        _private_dir(folder)
        return folder

    @contextlib.contextmanager
    def lock(self, job_id: str) -> Iterator[None]:
        """Serialises read-modify-write of a job's record on this machine.

        An exclusive `flock` on the job's lock file (in the store folder, or in the cache
        folder of a remote store) orders the processes and threads of this machine: a
        worker's heartbeat thread and its job's thread never interleave their writes. A
        remote store has no lock across machines; it needs none, because a record has one
        writer at a time: the client until a worker claims the job (and for cancelling a
        queued one), then the worker running it (a cancel request is a separate file).
        """
        import fcntl

        path = self.job_dir(job_id) / LOCK_FILE
        with path.open("a") as handle:  # each open is its own lock holder, threads too
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def pull(self, job_id: str) -> Path:
        """Brings a job's files and newest checkpoint into its local working folder.

        A local store needs nothing. For a remote store, files missing locally or of another
        size are downloaded, and the remote checkpoint replaces the local one when it is
        newer (a job redelivered to this machine resumes where the last one stopped).

        Returns:
            The local working folder.
        """
        local = self.job_dir(job_id)
        if self.is_local:
            return local
        state = self._sync_state(local)
        for rel, size in self.list_files(job_key(job_id)).items():
            if rel.split("/")[0] in STORE_ONLY:
                continue
            target = local / rel
            if target.is_file() and target.stat().st_size == size:
                continue
            self._download(self._remote(job_key(job_id, rel)), target)
            stat = target.stat()
            state[rel] = [stat.st_size, stat.st_mtime_ns]
        self._write_sync_state(local, state)
        self._pull_checkpoint(job_id, local)
        return local

    def push(self, job_id: str) -> None:
        """Sends new or changed files of a job's working folder to a remote store.

        Files go up one by one (each atomically); the checkpoint goes up as a new snapshot
        folder, then the pointer to it, then older snapshots are deleted. A local store
        needs nothing.
        """
        if self.is_local:
            return
        local = self.job_dir(job_id)
        state = self._sync_state(local)
        for path in sorted(local.rglob("*")):
            rel = path.relative_to(local).as_posix()
            parts = rel.split("/")
            if not path.is_file() or parts[0] in STORE_ONLY + CHECKPOINT_LOCAL_NAMES:
                continue
            if not all(PART_PATTERN.fullmatch(part) for part in parts):
                continue
            stat = path.stat()
            signature = [stat.st_size, stat.st_mtime_ns]
            if state.get(rel) == signature:
                continue
            self._upload(path, job_key(job_id, rel))
            state[rel] = signature
        self._write_sync_state(local, state)
        self._push_checkpoint(job_id, local)

    def checkpoint_step(self, job_id: str) -> int:
        """The step of the job's checkpoint in the store, or -1 when it has none."""
        if self.is_local:
            return _read_step(self.job_dir(job_id) / CHECKPOINT_DIR)
        try:
            return int(self.read_json(job_key(job_id, CHECKPOINT_POINTER))["step"])
        except FileNotFoundError:
            return -1

    def _push_checkpoint(self, job_id: str, local: Path) -> None:
        folder = local / CHECKPOINT_DIR
        step = _read_step(folder)
        if step < 0 or step == self.checkpoint_step(job_id):
            return
        snapshot = f"{CHECKPOINT_SNAPSHOTS}/step-{step:08d}-{uuid.uuid4().hex[:6]}"
        for path in sorted(folder.iterdir()):
            if path.is_file() and PART_PATTERN.fullmatch(path.name):
                self._upload(path, job_key(job_id, snapshot, path.name))
        pointer = {"step": step, "snapshot": snapshot}
        self.write_json(job_key(job_id, CHECKPOINT_POINTER), pointer)
        for name in self.list_names(job_key(job_id, CHECKPOINT_SNAPSHOTS)):
            if f"{CHECKPOINT_SNAPSHOTS}/{name}" != snapshot:
                self.delete(job_key(job_id, CHECKPOINT_SNAPSHOTS, name))

    def _pull_checkpoint(self, job_id: str, local: Path) -> None:
        try:
            pointer = self.read_json(job_key(job_id, CHECKPOINT_POINTER))
        except FileNotFoundError:
            return
        folder = local / CHECKPOINT_DIR
        if int(pointer["step"]) <= _read_step(folder):
            return
        snapshot = validate_key(str(pointer["snapshot"]))
        staging = local / f"{CHECKPOINT_DIR}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for rel in self.list_files(job_key(job_id, snapshot)):
            self._download(self._remote(job_key(job_id, snapshot, rel)), staging / rel)
        old = local / f"{CHECKPOINT_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _sync_state(local: Path) -> dict[str, list[int]]:
        try:
            return json.loads((local / SYNC_STATE).read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _write_sync_state(local: Path, state: dict[str, list[int]]) -> None:
        _atomic_write_local(local / SYNC_STATE, json.dumps(state).encode())


def default_store() -> Store:
    """The store configured by the environment (`$STYLEDROP_STORE`, else `runs/store`)."""
    return Store()
