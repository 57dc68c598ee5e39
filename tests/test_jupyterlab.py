"""The course in a real JupyterLab, in a real browser (Debian's chromium driven by Playwright).

A JupyterLab server on a loopback port with a token serves copies of notebooks 00 and 01; the
browser runs every cell, the saved notebook must hold no error output, and moving the bits slider
of notebook 01's explorer must change its picture. Screenshots go to ``$QCOURSE_SCREENSHOTS``
(default: a temporary folder), to be looked at. Skipped where no chromium or Playwright exists;
``.ci/run`` installs both.
"""
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

import nbformat
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOTEBOOKS = ["00_welcome_and_tour.ipynb", "01_number_formats_and_formulas.ipynb"]
# Chromium's own network chatter (updates, sync, ...) cannot reach anything here: turn it off
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_SECONDS = 600
# JupyterLab 4 renders only the cells in view ("windowing"): render them all, so every prompt
# and output is in the page
SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
            '{"windowingMode": "none"}',
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            '{"fetchNews": "false", "checkForUpdates": false}'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        # without the committed outputs and prompts [1]:, [2]: ..., so that "every prompt is
        # numbered" means this run finished (and a widget shown is this kernel's)
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, str(root / name))
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    settings = root / ".settings"
    for name, text in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(text)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings))
    log = open(root / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail(f"JupyterLab did not start: {(root / 'server.log').read_text()}")
                time.sleep(0.5)
        shots = pathlib.Path(os.environ.get("QCOURSE_SCREENSHOTS") or root / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root,
                   "browser": browser, "shots": shots}
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def open_and_run_all(lab, name):
    """Open notebook ``name``, run every cell, wait until all have run, save; return the page."""
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    # a workspace of its own, reset: no tab of an earlier test is restored next to this one
    workspace = pathlib.Path(name).stem
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector("#jp-main-statusbar :text('Idle')", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell:visible").first.click()   # this tab's, not a restored one
    page.keyboard.press("Escape")
    run_command(page, "Run All Cells")
    prompts = "() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))" \
              ".map(e => e.innerText.trim())"
    deadline = time.time() + RUN_SECONDS
    while True:
        shown = page.evaluate(prompts)
        if shown and all(re.fullmatch(r"\[\d+\]:", p) for p in shown):
            break
        assert time.time() < deadline, f"{name}: not every cell ran in {RUN_SECONDS} s: {shown}"
        time.sleep(1)
    page.keyboard.press("Control+s")
    time.sleep(2)
    return page


def run_command(page, label: str) -> None:
    """Run a JupyterLab command by its label, through the command palette."""
    page.keyboard.press("Control+Shift+C")
    page.fill(".lm-CommandPalette-input", label)
    page.wait_for_selector(".lm-CommandPalette-item.lm-mod-active", timeout=10_000)
    page.keyboard.press("Enter")


def error_outputs(path):
    nb = nbformat.read(path, as_version=4)
    return [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def test_notebook_00_runs_in_jupyterlab_without_errors(lab):
    page = open_and_run_all(lab, NOTEBOOKS[0])
    page.screenshot(path=str(lab["shots"] / "00-after-run-all.png"))
    assert error_outputs(lab["root"] / NOTEBOOKS[0]) == []
    page.close()


def widget_picture(page) -> str:
    """The source of the first picture inside the first widget's output area."""
    image = page.locator(".jupyter-widgets .jp-OutputArea img").first
    image.wait_for(timeout=30_000)
    return image.get_attribute("src")


def test_notebook_01_runs_and_its_explorer_redraws_when_a_slider_moves(lab):
    page = open_and_run_all(lab, NOTEBOOKS[1])
    assert error_outputs(lab["root"] / NOTEBOOKS[1]) == []
    slider = page.locator(".jupyter-widgets.widget-slider").first
    slider.scroll_into_view_if_needed()
    before = widget_picture(page)
    page.screenshot(path=str(lab["shots"] / "01-explorer-before.png"))
    slider.locator(".noUi-handle, .ui-slider-handle").first.focus()
    page.keyboard.press("ArrowRight")
    deadline = time.time() + 60
    while widget_picture(page) == before:
        assert time.time() < deadline, "the explorer's picture did not change with the slider"
        time.sleep(0.5)
    page.screenshot(path=str(lab["shots"] / "01-explorer-after.png"))
    page.close()
