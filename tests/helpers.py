"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from unittest import mock


def run_cli(*args, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`headstart ARGS` run in this process through the installed command's own entry point
    (headstart.cli:main): its exit status, standard output and standard error, as a
    CompletedProcess. A new Python process would add nothing but the seconds it takes to import
    torch again; the tests that need a process of their own (killed, several processes, a server)
    start one."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["headstart", *map(str, args)]
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    code = 0
    from headstart.cli import main

    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with mock.patch.object(sys, "argv", argv), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # what the real command would print before exiting with 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed with exit status 2 and said why in one line of standard error, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def http_send(request: urllib.request.Request) -> tuple[int, dict]:
    """A request to the server: its status and JSON answer, for errors too."""
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def http_health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
        return json.load(response)


def headless_chromium(profile: str):
    """Debian's Chromium under ChromeDriver, headless, with a profile folder of its own and the page's console kept."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
