"""`lam-trt serve` end to end in a real headless browser (Debian's chromium, driven by Playwright
for Python; nothing downloads a browser): open the page, pick the image, click on it, drag on the SR
output, compare two models side by side, and check that the maps and the DI shown equal the CLI's.

``LAM_TRT_SERVE_SCREENSHOT=docs/serve.png`` also saves the page as README shows it.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from lam_trt.commands.demo import demo_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL = "apt-get install -y chromium (as root) and pip install 'lam-trt[serve]' playwright; .ci/run does both"
if not CHROMIUM.is_file():
    pytest.skip(f"no browser: {CHROMIUM} is missing ({INSTALL})", allow_module_level=True)
pytest.importorskip("starlette", reason=f"the serve extra is not installed ({INSTALL})")
sync_api = pytest.importorskip("playwright.sync_api", reason=f"Playwright is not installed ({INSTALL})")
pytestmark = pytest.mark.slow  # a browser, a server and the CLI: about a minute on 2 cores

MODEL, IMAGE, _ = demo_files()
FAST = ["--steps", "8", "--rule", "trapezoid"]
WAIT_MS = 180_000  # a loaded CI machine builds the attribution graph slowly; nothing here is timed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return {**os.environ, "LAM_TRT_CACHE": str(tmp_path_factory.mktemp("graph-cache"))}


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    """`lam-trt serve` as a user starts it: the demo model twice (to compare side by side)."""
    port = free_port()
    tmp = tmp_path_factory.mktemp("serve")  # its TMPDIR, to see the results folder go
    log = tmp / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lam_trt.cli", "serve", str(MODEL), "--demo",
                                 "--provider", "cpu", "--port", str(port)], env={**env, "TMPDIR": str(tmp)},
                                stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "api/models", timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"lam-trt serve did not start: {log.read_text()}")
            time.sleep(0.2)
    yield url
    proc.terminate()  # uvicorn shuts down cleanly, then exits by the same signal
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    assert not list(tmp.glob("lam-trt-serve-*")), "the results folder outlived the server"


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server)
        yield page
        browser.close()
        assert not errors, errors


def cli_result(env, tmp_path, x: int, y: int, size: int) -> dict:
    out = tmp_path / f"cli-{x}-{y}"
    proc = subprocess.run([sys.executable, "-m", "lam_trt.cli", "attribute", str(MODEL), str(IMAGE), "--window",
                           str(x), str(y), "--size", str(size), *FAST, "--provider", "cpu", "--out", str(out),
                           "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def shown_window(page) -> tuple[int, int, int]:
    return tuple(int(page.input_value(f"#{k}")) for k in ("x", "y", "size"))


def expected_window(shown: tuple[float, float], natural: int, at: tuple[float, float],
                    size: int) -> tuple[int, int]:
    """The window the page must centre on the point ``at`` (relative to the padding box, as
    Playwright's click positions are) of an element ``shown`` (width, height) CSS pixels large that
    shows ``natural`` x ``natural`` SR pixels."""
    width, height = shown

    def one(offset: float, extent: float) -> int:
        return max(0, min(round(offset * natural / extent - size / 2), natural - 1 - size))
    return one(at[0], width), one(at[1], height)


def wait_for(page, script: str) -> None:
    """Poll ``script`` in the page (wait_for_function would eval a string, which the page's CSP forbids)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {script}; the page says: " + \
            page.evaluate("() => document.querySelector('main').innerText")
        page.wait_for_timeout(100)


def wait_done(page, count: int) -> list:
    wait_for(page, f"() => document.querySelectorAll('.result[data-state=done]').length === {count}")
    wait_for(page, "() => Array.from(document.querySelectorAll('.result img:not([hidden])'))"
                   ".every(i => i.complete && i.naturalWidth > 0)")
    results = page.locator(".result").all()
    assert len(results) == count and all(r.locator(".error").text_content() == "" for r in results)
    return results


def test_click_on_the_image_shows_the_cli_map_and_di(page, env, tmp_path):
    page.select_option("#pick", IMAGE.name)
    wait_for(page, "() => document.getElementById('canvas').width > 0")
    page.fill("#steps", "8")
    page.select_option("#rule", "trapezoid")
    canvas = page.locator("#canvas")
    width, height = canvas.evaluate("e => [e.clientWidth, e.clientHeight]")
    at = (width * 0.4, height * 0.35)
    canvas.click(position={"x": at[0], "y": at[1]})
    [result] = wait_done(page, 1)
    x, y, size = shown_window(page)
    assert (x, y) == expected_window((width, height), 256, at, size)
    expected = cli_result(env, tmp_path, x, y, size)
    di = result.locator(".di")
    assert float(di.get_attribute("data-value")) == pytest.approx(expected["diffusion_index"], rel=1e-9)
    assert di.text_content() == f"{expected['diffusion_index']:.3f}"
    assert float(result.locator(".gini").get_attribute("data-value")) == pytest.approx(expected["gini"], rel=1e-9)
    assert result.locator(".panels img").count() == 5
    links = {a.text_content() for a in result.locator(".downloads a").all()}
    assert {"result.json", "attribution.npy", "lam.png", "path.png"} <= links


def test_drag_on_the_sr_output_and_compare_two_models_side_by_side(page, env, tmp_path):
    names = [o.get_attribute("value") for o in page.locator("#model-b option").all()]
    page.select_option("#model-b", names[-1])  # the second copy of the demo model
    output = page.locator(".result img[data-panel=output]").first
    output.scroll_into_view_if_needed()  # the mouse acts in the viewport
    box = output.bounding_box()
    border = output.evaluate("e => [e.clientLeft, e.clientTop, e.clientWidth, e.clientHeight]")
    left, top, width, height = box["x"] + border[0], box["y"] + border[1], border[2], border[3]
    end = (width * 0.65, height * 0.6)
    page.mouse.move(left + width * 0.3, top + height * 0.3)
    page.mouse.down()
    page.mouse.move(left + end[0], top + end[1], steps=5)
    page.mouse.up()
    results = wait_done(page, 2)
    x, y, size = shown_window(page)
    assert (x, y) == expected_window((width, height), 256, end, size)
    expected = cli_result(env, tmp_path, x, y, size)["diffusion_index"]
    shown = [float(r.locator(".di").get_attribute("data-value")) for r in results]
    assert shown == pytest.approx([expected, expected], rel=1e-9)
    screenshot = os.environ.get("LAM_TRT_SERVE_SCREENSHOT")
    if screenshot:  # 256 colours keep the committed picture small
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        shot.quantize(256, method=Image.Quantize.MEDIANCUT).save(screenshot, optimize=True)
