"""Copying outputs out of the store: an HTML report comes with the images it shows."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.html_report import HtmlReport
from tests.html_report import assert_report_complete
from worker.outputs import copy_out, local_references
from worker.store import Store, StoreKeyError, job_key

JOB = "demo-20260101-abc123"


def _stored_report(store: Store) -> str:
    """A two-image report written into a job's folder, as a worker writes it."""
    report = HtmlReport("report")
    report.figures([np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3))], ["black", "white"])
    report.write(store.job_dir(JOB) / "demo" / "report.html")
    return job_key(JOB, "demo", "report.html")


def test_a_copied_report_shows_every_image(tmp_path):
    store = Store(tmp_path / "store")
    key = _stored_report(store)
    out = tmp_path / "out"
    written = copy_out(store, key, out / "report.html")
    assert written[0] == out / "report.html" and len(written) == 1 + 2
    assert assert_report_complete(out / "report.html") == 2


def test_the_page_alone_is_a_broken_report(tmp_path):
    store = Store(tmp_path / "store")
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    alone.write_bytes(store.read_bytes(_stored_report(store)))  # what `make demo` used to do
    with pytest.raises(AssertionError, match="no file"):
        assert_report_complete(alone)


def test_other_files_are_copied_as_they_are(tmp_path):
    store = Store(tmp_path / "store")
    store.write_json(job_key(JOB, "summary.json"), {"src": "x.png"})
    assert copy_out(store, job_key(JOB, "summary.json"), tmp_path / "s.json") == [
        tmp_path / "s.json"
    ]


def test_only_local_references_are_followed_and_none_leaves_the_folder(tmp_path):
    page = (
        '<img src="a_files/1.png"><img src="data:image/png;base64,AAAA">'
        '<a href="https://example.org/x.png">x</a><a href="#top">top</a>'
        '<img src="./a_files/1.png"><link href="style%20sheet.css">'
    )
    assert local_references(page) == ["a_files/1.png", "style sheet.css"]
    store = Store(tmp_path / "store")
    store.write_bytes(job_key(JOB, "r.html"), b'<img src="../../other/secret.png">')
    with pytest.raises(StoreKeyError, match="outside"):
        copy_out(store, job_key(JOB, "r.html"), tmp_path / "r.html")
