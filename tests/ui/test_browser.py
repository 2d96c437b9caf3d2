"""`styledrop serve` in a real browser: upload a style, train it, see it succeed, Ctrl-C.

Starts the whole service as a user would (`styledrop serve`: its own Redis with a
generated password, one worker, the Streamlit app) on free ports, drives Debian's
headless Chromium with Playwright, and saves screenshots in the test's output folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker import jobs
from worker.local_redis import free_port
from worker.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: without the background-networking ones Chromium keeps
# trying to reach Google's hosts.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
STYLE_IMAGE = Path(__file__).resolve().parents[2] / "styledrop/data/demo_style_house_line_art.png"
TRAIN_TIMEOUT = 420  # seconds: the worker imports JAX, loads the zoo and compiles


def _wait_for_line(log: Path, pattern: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found.group(0)
        if process.poll() is not None:
            pytest.fail(f"styledrop serve exited with {process.returncode}:\n{text[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"No {pattern!r} in the serve log after {timeout:g} s:\n{log.read_text()[-4000:]}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _take_ctrl_c() -> None:
    """Restores the default SIGINT action in the child before it starts Python.

    A test run started in the background (`pytest &`, nohup) ignores SIGINT, children
    inherit that, and Python then never raises KeyboardInterrupt, so the Ctrl-C below
    would not reach `styledrop serve`.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_served_app_trains_a_style_submitted_in_the_browser(tmp_path):
    if not Path(CHROMIUM).exists() or shutil.which("redis-server") is None:
        pytest.skip("needs Debian's chromium and redis-server (make system-packages)")
    from playwright.sync_api import sync_playwright

    store_dir, log = tmp_path / "store", tmp_path / "serve.log"
    app_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "STYLEDROP_BROKER_URL"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(app_port),
         "--redis-port", str(redis_port), "--store", str(store_dir), "--workers", "1"],
        env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
        preexec_fn=_take_ctrl_c,
    )  # fmt: skip
    try:
        url = _wait_for_line(log, r"StyleDrop is at http://\S+", serve, 180).split()[-1]
        # The worker is ready when Celery logs it; the job would wait in the queue anyway.
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.get_by_role("heading", name="New style").wait_for(timeout=60_000)
            page.locator("input[type=file]").set_input_files(str(STYLE_IMAGE))
            page.get_by_role("textbox", name="What it shows").fill("a house")
            page.get_by_role("textbox", name="Style descriptor").fill("in line art style")
            steps = page.get_by_role("spinbutton", name="Steps", exact=True)
            steps.fill("4")
            steps.press("Enter")
            page.get_by_role("button", name="Start training").click()
            queued = page.get_by_text(re.compile(r"Queued ft-\S+"))
            queued.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "new_style.png"), full_page=True)
            job_id = re.search(r"ft-[a-z0-9-]+", queued.inner_text()).group(0).rstrip(".")

            store = Store(store_dir)
            deadline = time.monotonic() + TRAIN_TIMEOUT
            while not jobs.get(store, job_id).is_terminal:
                assert time.monotonic() < deadline, f"{job_id} did not end:\n{log.read_text()}"
                time.sleep(1)
            job = jobs.get(store, job_id)
            assert job.status == "succeeded", job.error
            assert job.inputs["steps"] == 4 and job.inputs["descriptor"] == "in line art style"
            assert job.inputs["images"][0]["caption"] == "a house"

            page.goto(f"{url}/jobs")
            page.get_by_role("heading", name=f"{job_id}: succeeded").wait_for(timeout=60_000)
            page.get_by_role("button", name="Download adapter").wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)
            browser.close()
        assert (tmp_path / "new_style.png").stat().st_size > 10_000
        assert (tmp_path / "jobs.png").stat().st_size > 10_000
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)  # Ctrl-C
        code = serve.wait(90)
    assert code == 0, log.read_text()[-4000:]
    assert not _port_open(app_port) and not _port_open(redis_port)
