"""A real uvicorn server on 127.0.0.1: a bounded concurrent load test and the web page in headless Chromium."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

import clipforge
from clipforge.data.shapes import ShapesWorld, write_csv_dataset

pytest.importorskip("faiss")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from clipforge.index import BuildOptions, build_index  # noqa: E402
from clipforge.serve import create_app, serve_in_thread  # noqa: E402
from clipforge.serve.loadtest import run_load  # noqa: E402

CHROMIUM = os.environ.get("CLIPFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    torch.manual_seed(0)
    clipforge.save(clipforge.create_model("tiny"), root / "model", clipforge.get_tokenizer("tiny"))
    csv = write_csv_dataset(ShapesWorld(seed=2, image_size=48), root / "data", n=36)
    build_index([str(csv)], root / "idx", model=root / "model", options=BuildOptions(progress=False))
    return root


@pytest.fixture(scope="module")
def server(corpus):
    with serve_in_thread(create_app(corpus / "idx"), host="127.0.0.1") as url:
        yield url


def test_bounded_concurrent_load_has_no_errors(server):
    result = run_load(server, requests=200, concurrency=8, timeout=30)
    print(f"\nload test on {server}: {result.summary()}")
    for name, stats in result.by_endpoint.items():
        print(f"  {name:15s} n={stats['n']:3d} p50 {stats['p50_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms")
    assert result.requests == 200
    assert result.errors == 0, result.error_examples


def test_timed_load_over_chosen_endpoints_counts_statuses(server):
    endpoints = ("GET /search", "POST /classify")
    result = run_load(server, requests=None, concurrency=4, timeout=30, seconds=1.5, endpoints=endpoints)
    assert 1.5 <= result.seconds < 30 and result.errors == 0, result.error_examples
    assert set(result.by_endpoint) == set(endpoints) and result.status_counts == {"200": result.requests}
    with pytest.raises(ValueError, match="bounded"):
        run_load(server, requests=None, seconds=None)
    with pytest.raises(ValueError, match="endpoints"):
        run_load(server, requests=1, endpoints=("GET /nope",))


def wait_for_images(page, timeout: float = 20.0) -> None:
    """Wait until every result thumbnail has decoded.

    The page's CSP forbids eval, so no `wait_for_function` (it evals its predicate in the page):
    `evaluate` of a function runs through the debugger protocol, which the CSP does not govern.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(
        "() => Array.from(document.querySelectorAll('#results img')).every(i => i.complete && i.naturalWidth > 0)"
    ):
        assert time.monotonic() < deadline, "result thumbnails did not load"
        time.sleep(0.05)


def test_web_page_in_headless_chromium(server, corpus):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CLIPFORGE_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses Debian's chromium)")
    shots = Path(os.environ.get("CLIPFORGE_SCREENSHOT_DIR", corpus / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server + "/")
            expect(page.locator("#stats")).to_contain_text("36 items")
            expect(page.locator("#results .result")).to_have_count(24)  # a browsing grid before any query
            expect(page.locator("#status")).to_contain_text("browsing 24 of 36 items")
            wait_for_images(page)

            page.fill("#query", "a red circle")
            page.select_option("#k", "12")
            page.click("#search-btn")
            expect(page.locator("#results .result")).to_have_count(12)
            assert "a red circle" in page.text_content("#status")
            wait_for_images(page)

            query_image = corpus / "data" / "images" / "000004.png"
            page.set_input_files("#file", str(query_image))
            page.click("#image-search-btn")
            expect(page.locator("#status")).to_contain_text("000004.png")
            assert page.get_attribute("#results .result", "data-id") == "4"  # the image itself comes first

            page.fill("#labels", "circle, square, triangle, star")
            page.click("#classify-btn")
            expect(page.locator("#predictions .prediction")).to_have_count(4)
            assert page.is_hidden("#error")

            wait_for_images(page)
            page.screenshot(path=str(shots / "search-page.png"), full_page=True)

            page.fill("#labels", " , ")
            page.click("#classify-btn")
            expect(page.locator("#error")).to_be_visible()
            assert "labels" in page.text_content("#error")  # the API's 4xx message is shown
            assert errors == []
        finally:
            browser.close()
    assert (shots / "search-page.png").stat().st_size > 10_000
    print(f"\nscreenshot: {shots / 'search-page.png'}")


def _closed_within(sock, seconds: float) -> tuple[bool, bytes]:
    """(whether the server closed `sock` within `seconds`, what it sent before)."""
    import time

    sock.settimeout(0.2)
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, got
        if not data:
            return True, got
        got += data
    return False, got


def test_slow_clients_are_cut_off(corpus):
    """300 idle half-open connections were held for over 130 s; a trickled body was waited for forever."""
    import socket

    from clipforge.serve import Limits

    app = create_app(corpus / "idx", Limits(body_timeout_s=1.0))
    with serve_in_thread(app, host="127.0.0.1", header_timeout=1.0, keep_alive=1.0) as url:
        host, port = url.removeprefix("http://").split(":")
        idle, partial, slow_body = (socket.create_connection((host, int(port))) for _ in range(3))
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        slow_body.sendall(
            b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"texts\": "
        )
        assert _closed_within(idle, 5)[0] and _closed_within(partial, 5)[0]
        _, answer = _closed_within(slow_body, 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        for s in (idle, partial, slow_body):
            s.close()
        import httpx

        assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # normal clients are unaffected
