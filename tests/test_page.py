"""The page of ``elman serve`` in a real browser: headless Chromium (Debian's ``chromium``,
which ``.ci/run`` installs) driven by Playwright. It types a review, submits it, and checks that
the verdict, the coloured words and the heat map show the values the API returns."""

import os
import shutil

import pytest

from conftest import Running

REVIEW = (
    "I expected a dull remake, but this film is wonderful: the acting is superb and the story "
    "moved me. A bit long in the middle, yet I loved every minute of the ending."
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium on PATH: .ci/run installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def server(subset_model):
    running = Running(subset_model)
    yield running
    running.stop()


def test_the_page_shows_the_verdict_words_and_states_the_api_gives(server, tmp_path):
    from playwright.sync_api import sync_playwright

    _, predicted = server.post("/predict", {"texts": [REVIEW]})
    _, reading = server.post("/explain", {"text": REVIEW})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 1400})  # a phone's width
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + "/")
        page.fill("#review", REVIEW)
        page.click("#read")
        page.wait_for_selector("#words span.word", timeout=30_000)
        page.wait_for_function("document.getElementById('heatmap').dataset.cols > 0")

        verdict = predicted["predictions"][0]
        assert page.inner_text("#verdict") == verdict["label"]
        shown = float(page.get_attribute("#probability", "data-value"))
        assert shown == pytest.approx(verdict["probability"], abs=1e-9)
        words = page.eval_on_selector_all(
            "#words span.word", "spans => spans.map(s => s.textContent)"
        )
        assert words == reading["words"]
        changes = page.eval_on_selector_all(
            "#words span.word", "spans => spans.map(s => Number(s.dataset.change))"
        )
        assert changes == pytest.approx([c or 0 for c in reading["changes"]], abs=1e-9)
        coloured = page.eval_on_selector_all(
            "#words span.word", "spans => spans.map(s => getComputedStyle(s).backgroundColor)"
        )
        strongest = max(range(len(changes)), key=lambda t: abs(changes[t]))
        assert coloured[strongest] != "rgba(0, 0, 0, 0)"  # the word that moved it most is shaded
        heatmap = page.eval_on_selector(
            "#heatmap", "c => [Number(c.dataset.rows), Number(c.dataset.cols), c.width, c.height]"
        )
        units, words_read = len(reading["states"][0]), len(reading["words"])
        assert heatmap == [units, words_read, words_read, units]  # a pixel per (unit, word)
        # one pixel against its state: unit 0 after the first word (blue -1 .. white 0 .. red +1)
        pixel = page.eval_on_selector(
            "#heatmap", "c => Array.from(c.getContext('2d').getImageData(0, 0, 1, 1).data)"
        )
        value = reading["states"][0][0]
        fade = round(255 * (1 - min(abs(value), 1)))
        assert pixel[:3] == ([255, fade, fade] if value > 0 else [fade, fade, 255])
        points = page.get_attribute("#trajectory-line", "points").split()
        assert len(points) == len(reading["words"])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
        examples = page.locator("#examples button")
        assert examples.count() >= 2
        assert not errors, errors
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
