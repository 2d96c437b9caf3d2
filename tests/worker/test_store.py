"""The artifact store: keys that could escape the root are refused; writes are atomic."""

from __future__ import annotations

import json
import os
import threading

import pytest

from worker.store import (
    InvalidJobIdError,
    Store,
    StoreKeyError,
    job_key,
    validate_job_id,
    validate_key,
)


@pytest.mark.parametrize(
    "job_id",
    ["../etc", "..", ".", "", "a/b", "/abs", "ft-1/../../x", ".hidden", "UPPER", "a b", "-x",
     "x" * 65, None, 7, "ft\x00", "ft\n"],
)  # fmt: skip
def test_bad_job_ids_are_refused(job_id):
    with pytest.raises(InvalidJobIdError):
        validate_job_id(job_id)
    with pytest.raises(StoreKeyError):
        job_key(job_id, "job.json")


@pytest.mark.parametrize(
    "key",
    ["/etc/passwd", "jobs/../../etc", "jobs/./x", "jobs//x", "jobs/.lock", "jobs/x/.hidden",
     "..", "", "a\\b", "s3://bucket/x", "jobs/x/", "~/x"],
)  # fmt: skip
def test_bad_keys_are_refused(key, tmp_path):
    with pytest.raises(StoreKeyError):
        validate_key(key)
    store = Store(tmp_path / "root")
    with pytest.raises(StoreKeyError):
        store.write_bytes(key, b"x")
    with pytest.raises(StoreKeyError):
        store.read_bytes(key)
    assert not (tmp_path / "etc").exists()


def test_good_keys_and_ids_pass():
    assert validate_job_id("ft-20260101-abc123") == "ft-20260101-abc123"
    assert job_key("ft-1", "inputs", "00.png") == "jobs/ft-1/inputs/00.png"
    assert validate_key("jobs/ft-1/previews/preview-000010.png")


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    store = Store(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "jobs").mkdir()
    os.symlink(outside, store.root / "jobs" / "evil")
    with pytest.raises(StoreKeyError):
        store.write_bytes("jobs/evil/x.txt", b"x")
    assert not list(outside.iterdir())


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    store = Store(tmp_path / "root")
    key = job_key("ft-1", "job.json")
    store.write_json(key, {"n": 0})
    stop = threading.Event()
    seen: list[int] = []
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(store.read_json(key)["n"])  # never empty or half written
            except Exception as error:  # pragma: no cover - the failure being tested
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(1, 300):
        store.write_json(key, {"n": n, "padding": "x" * 20_000})
    stop.set()
    reader.join()
    assert not errors
    assert seen and seen == sorted(seen)
    folder = store.root / "jobs" / "ft-1"
    assert [p.name for p in folder.iterdir() if p.name != ".lock"] == ["job.json"]
    # The store is this user's only: records 0600, folders 0700 (root, jobs/, the job's).
    assert oct((folder / "job.json").stat().st_mode & 0o777) == oct(0o600)
    for path in (store.root, store.root / "jobs", folder):
        assert oct(path.stat().st_mode & 0o777) == oct(0o700), path


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "root")
    key = job_key("ft-1", "job.json")
    store.write_json(key, {"n": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write_json(key, {"n": 2})
    monkeypatch.undo()
    assert store.read_json(key) == {"n": 1}
    assert sorted(p.name for p in (store.root / "jobs" / "ft-1").iterdir()) == ["job.json"]


def test_listing_skips_hidden_and_temporary_names(tmp_path):
    store = Store(tmp_path / "root")
    store.write_bytes("jobs/ft-1/a.txt", b"a")
    (store.root / "jobs" / "ft-1" / ".a.txt.123.tmp").write_bytes(b"partial")
    assert store.list_files("jobs/ft-1") == {"a.txt": 1}
    assert store.list_names("jobs") == ["ft-1"]


def test_remote_store_round_trips_a_job_folder_and_its_checkpoint(tmp_path):
    remote = Store(f"file://{tmp_path / 'remote'}", cache_dir=tmp_path / "cache-a",
                   force_remote=True)  # fmt: skip
    assert not remote.is_local
    remote.write_bytes(job_key("ft-1", "inputs", "00.png"), b"png")
    local = remote.pull("ft-1")
    assert (local / "inputs" / "00.png").read_bytes() == b"png"
    checkpoint = local / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text(json.dumps({"step": 5}))
    (checkpoint / "state.safetensors").write_bytes(b"weights")
    (local / "train_log.jsonl").write_text('{"step": 5}\n')
    remote.push("ft-1")
    assert remote.checkpoint_step("ft-1") == 5
    # Another machine (another cache) resumes from the pushed checkpoint.
    other = Store(f"file://{tmp_path / 'remote'}", cache_dir=tmp_path / "cache-b",
                  force_remote=True)  # fmt: skip
    folder = other.pull("ft-1")
    assert json.loads((folder / "checkpoint" / "state.json").read_text()) == {"step": 5}
    assert (folder / "checkpoint" / "state.safetensors").read_bytes() == b"weights"
    assert (folder / "train_log.jsonl").read_text() == '{"step": 5}\n'
