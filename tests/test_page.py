"""The page of ``elman serve`` in a real browser, as a person uses it: headless Chromium (Debian's
``chromium``, which ``.ci/run`` installs) driven by Playwright, for a text, a series and a speech
model trained on real data. Each test submits good and bad input and checks that the result is
the API's, that nothing of an earlier result stays beside an error, that the views follow one
step together (pointer and keyboard), the unit picker and the search of the test data, and runs
axe-core (from the npm registry, checked against its published hash) for serious or critical
accessibility violations. Screenshots go to ``$ELMAN_SCREENSHOTS`` when set (``docs/``'s were
taken so: ``benchmarks/page.py`` says how)."""

import base64
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import Running

REVIEW = (
    "I expected a dull remake, but this film is wonderful: the acting is superb and the story "
    "moved me. A bit long in the middle, yet I loved every minute of the ending."
)
AXE = "4.14.1"  # axe-core, the accessibility rules engine, and its npm tarball's sha512
AXE_SHA512 = (
    "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
STALE = (  # what must be empty after an error: no earlier result beside it
    "[document.getElementById('verdict').textContent, document.getElementById('probability')"
    ".textContent, document.getElementById('notes').textContent,"
    " document.getElementById('views').hidden]"
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium on PATH: .ci/run installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe.min.js, fetched once from the npm registry into elman's cache."""
    from elman.data.imdb import default_cache_dir

    path = default_cache_dir() / "npm" / f"axe-core-{AXE}.min.js"
    if not path.exists():
        url = f"https://registry.npmjs.org/axe-core/-/axe-core-{AXE}.tgz"
        try:
            packed = urllib.request.urlopen(url, timeout=60).read()
        except OSError as error:
            if os.environ.get("CI"):
                pytest.fail(f"axe-core could not be fetched from {url}: {error}")
            pytest.skip(f"axe-core could not be fetched from {url}: {error}")
        digest = base64.b64encode(hashlib.sha512(packed).digest()).decode()
        assert digest == AXE_SHA512, "the axe-core tarball is not the one published"
        with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
            script = archive.extractfile("package/axe.min.js").read()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(script)
        partial.replace(path)
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def open_page(browser, url: str, width: int = 1100):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.errors, page.failed = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("response", lambda r: page.failed.append(r.url) if r.status >= 400 else None)
    page.goto(url + "/")
    page.wait_for_selector("#examples[data-loaded]", timeout=120_000)
    return page


def submit(page, keyboard: bool = False) -> None:
    page.evaluate(
        "delete document.body.dataset.drawnMs; document.getElementById('error').textContent = ''"
    )
    if keyboard:
        page.press("#review", "Control+Enter")
    else:
        page.click("#read")
    page.wait_for_function(
        "document.body.dataset.drawnMs || document.getElementById('error').textContent",
        timeout=60_000,
    )


def assert_refused(page, words: str) -> None:
    """An error in plain words, and nothing left of the result before it."""
    error = page.inner_text("#error")
    assert words in error, error
    assert page.evaluate(STALE) == ["", "", "", True]
    assert "object at 0x" not in error and "Traceback" not in error


def assert_no_serious_violations(page, axe_script: str) -> None:
    page.add_script_tag(content=axe_script)
    found = page.evaluate("async () => (await axe.run(document)).violations")
    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, serious


def screenshot(page, name: str) -> None:
    folder = os.environ.get("ELMAN_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"page-{name}.png"), full_page=True)


def assert_views_follow_one_step(page) -> None:
    """Keyboard on the words (or the plots), then the pointer: every view shows the same step."""
    target = "#words" if page.is_visible("#words") else "#scroller"
    page.focus(target)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#step-info", "data-step") == "2"
    geometry = page.evaluate(
        "() => { const c = document.getElementById('heatmap').dataset; return {left: +c.left,"
        " column: +c.column, cursor: parseFloat(document.getElementById('cursor').style.left),"
        " point: +document.getElementById('trajectory-point').getAttribute('cx')}; }"
    )
    middle = geometry["left"] + 2.5 * geometry["column"]  # step 2's column, in the heat map
    assert geometry["point"] == pytest.approx(middle) and geometry["cursor"] == pytest.approx(
        middle - 1
    )
    if target == "#words":
        assert page.evaluate("document.querySelector('#words span.current').dataset.step") == "2"
    box = page.locator("#trajectory").bounding_box()
    page.mouse.move(box["x"] + geometry["left"] + 4.5 * geometry["column"], box["y"] + 40)
    assert page.get_attribute("#step-info", "data-step") == "4"


def assert_unit_picker_and_search(page) -> None:
    """A click on a heat map row picks its unit; sorting reorders the rows; the search of the
    test data answers with matches."""
    canvas = page.locator("#heatmap")
    data = page.evaluate("({...document.getElementById('heatmap').dataset})")
    box = canvas.bounding_box()
    row = 2
    middle = float(data["top"]) + (row + 0.5) * float(data["row"])
    canvas.click(position={"x": float(data["left"]) + 3, "y": middle})
    picked = page.input_value("#unit")
    assert picked == str(page.evaluate("page.order")[row]) and box["height"] > 0
    assert page.is_visible("#unit-line") and f"unit {int(picked) + 1}" in page.inner_text(
        "#step-info"
    )
    page.check("#sort-units")
    order = page.evaluate("page.order")
    holding = page.evaluate("page.reading.holding")
    assert [holding[u] for u in order] == sorted(holding, reverse=True)
    page.click("#match")
    page.wait_for_function("document.getElementById('match-status').dataset.ms", timeout=60_000)
    matches = page.locator("#matches li")
    assert matches.count() >= 1, page.inner_text("#match-status")
    print(f"match: {page.inner_text('#match-status')}")


# ---- text ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_server(subset_model):
    running = Running(subset_model)
    yield running
    running.stop()


def test_text_page(browser, text_server, axe_script):
    _, predicted = text_server.post("/predict", {"texts": [REVIEW]})
    _, reading = text_server.post("/explain", {"text": REVIEW})
    page = open_page(browser, text_server.url)
    assert page.locator("#examples button").count() >= 2
    assert page.inner_text("label[for=review]")  # the box has a label
    submit(page)
    assert_refused(page, "Type or paste some text first")

    page.fill("#review", REVIEW)
    submit(page, keyboard=True)  # Ctrl+Enter
    verdict = predicted["predictions"][0]
    assert page.inner_text("#verdict") == verdict["label"]
    shown = float(page.get_attribute("#probability", "data-value"))
    assert shown == pytest.approx(verdict["probability"], abs=1e-9)
    words = page.eval_on_selector_all("#words span.word", "spans => spans.map(s => s.textContent)")
    assert words == reading["words"]
    assert page.get_attribute("#result", "aria-live") == "polite"
    print(f"text: click to drawn {page.evaluate('document.body.dataset.drawnMs')} ms")
    assert_views_follow_one_step(page)
    assert_unit_picker_and_search(page)
    assert_no_serious_violations(page, axe_script)
    screenshot(page, "text")

    # the same words in another script: refused, and the review's result is gone
    page.fill("#review", "Это был прекрасный фильм")
    submit(page)
    assert_refused(page, "among the")

    # a long review with an unknown word and emoji: what was not read is said and marked
    long = " ".join([REVIEW] * 8) + " zzqxvbl 😀"
    page.fill("#review", long)
    submit(page)
    notes = page.inner_text("#notes")
    assert "words were not read: the model keeps the last 150" in notes, notes
    assert "not in the model's vocabulary" in notes and "😀" in notes
    assert page.locator("#words span.unknown").count() >= 1
    assert page.locator("#words span.word").count() == 150  # all 150 ids words: no start token

    text_server.stop()  # the server goes away: an error, and nothing stale
    submit(page)
    assert_refused(page, "The server did not answer")
    assert not page.errors, page.errors


def test_examples_scroll_into_view_on_a_phone(browser, subset_model):
    running = Running(subset_model)
    try:
        page = open_page(browser, running.url, width=390)
        page.click("#examples button >> nth=0")
        page.wait_for_function("document.body.dataset.drawnMs", timeout=60_000)
        top = page.evaluate("document.getElementById('result').getBoundingClientRect().top")
        assert -2 <= top < 900  # the result is on screen (at its top), not below the fold
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
        assert not page.failed, page.failed  # (no favicon asked for: none answered 404)
        assert not page.errors, page.errors
        screenshot(page, "phone")
    finally:
        running.stop()


# ---- series ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def series_server(gunpoint, tmp_path_factory):
    from elman.cli import main

    out = tmp_path_factory.mktemp("page-series") / "model"
    test = gunpoint.with_name("GunPoint_TEST.txt")
    args = ["train", "series", "--data", str(gunpoint), "--test", str(test), "--out", str(out)]
    assert main([*args, "--hidden-size", "64", "--no-progress"]) in (0, None)
    running = Running(out)
    yield running, test
    running.stop()


def test_series_page(browser, series_server, axe_script, tmp_path):
    server, test = series_server
    label, *values = test.read_text().split("\n")[0].split()
    _, predicted = server.post("/predict", {"values": [[float(v) for v in values]]})
    page = open_page(browser, server.url)
    assert "series" in page.inner_text("#title")
    assert page.locator("#examples button").count() >= 2  # from its own test data
    page.fill("#review", "0.1, 0.2, banana")
    submit(page)
    assert_refused(page, '"banana" is not a number')

    page.fill("#review", ", ".join(values))  # a UCR row without its label, pasted
    submit(page)
    assert page.inner_text("#verdict") == predicted["predictions"][0]["label"]
    shown = float(page.get_attribute("#probability", "data-value"))
    assert shown == pytest.approx(predicted["predictions"][0]["probability"], abs=1e-6)
    assert page.is_visible("#inputs") and "P(2)" in page.inner_text("#probability")
    assert "Line plot of the series: 150 steps" in page.get_attribute("#inputs", "aria-label")
    print(f"series: click to drawn {page.evaluate('document.body.dataset.drawnMs')} ms")
    assert_views_follow_one_step(page)
    assert_unit_picker_and_search(page)
    assert_no_serious_violations(page, axe_script)
    screenshot(page, "series")

    npy = tmp_path / "one.npy"  # the same series as a file
    np.save(npy, np.array(values, dtype=np.float32))
    page.fill("#review", "")
    page.set_input_files("#file", str(npy))
    submit(page)
    assert float(page.get_attribute("#probability", "data-value")) == pytest.approx(shown, abs=1e-6)
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"\x93NUMPY not really")
    page.set_input_files("#file", str(broken))
    submit(page)
    assert_refused(page, "the .npy file cannot be read")
    assert not page.errors, page.errors


@pytest.fixture(scope="module")
def forecast_server(gunpoint, tmp_path_factory):
    from elman.cli import main

    root = tmp_path_factory.mktemp("page-forecast")
    rows = [line.split()[1:] for line in gunpoint.read_text().splitlines() if line.strip()]
    np.save(root / "gunpoint.npy", np.array(rows, dtype=np.float32))  # values only, no labels
    out = root / "model"
    args = ["train", "series", "--data", str(root / "gunpoint.npy"), "--task", "forecast"]
    assert main([*args, "--hidden-size", "64", "--out", str(out), "--no-progress"]) in (0, None)
    running = Running(out)
    yield running, rows[0]
    running.stop()


def test_forecaster_page(browser, forecast_server, axe_script):
    server, values = forecast_server
    _, predicted = server.post("/predict", {"values": [[float(v) for v in values]]})
    page = open_page(browser, server.url)
    page.fill("#review", " ".join(values))
    submit(page)
    forecast = predicted["forecasts"][0][0]
    assert page.inner_text("#verdict").startswith("next value: ")
    assert float(page.get_attribute("#probability", "data-value")) == pytest.approx(
        forecast, rel=1e-5, abs=1e-6
    )
    assert "dashed: the model's forecast" in page.get_attribute("#inputs", "aria-label")
    assert not page.is_visible("#trajectory")
    page.focus("#scroller")
    page.keyboard.press("Home")
    assert page.inner_text("#step-info").startswith("step 1: value")
    assert_no_serious_violations(page, axe_script)
    assert not page.errors, page.errors


# ---- speech ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_server(tmp_path_factory):
    from elman.cli import main

    fsdd = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fsdd.tar.gz"
    if not fsdd.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the Free Spoken Digit Dataset is expected at {fsdd}")
        pytest.skip(f"the Free Spoken Digit Dataset is expected at {fsdd}")
    out = tmp_path_factory.mktemp("page-speech") / "model"
    args = ["train", "speech", "--data", str(fsdd), "--test-pattern", r"_[0-4]\.wav$"]
    assert main([*args, "--hidden-size", "64", "--out", str(out), "--no-progress"]) in (0, None)
    with tarfile.open(fsdd) as archive:
        recording = archive.extractfile("fsdd/recordings/7_jackson_3.wav").read()
    running = Running(out)
    yield running, recording
    running.stop()


def test_speech_page(browser, speech_server, axe_script, tmp_path):
    server, recording = speech_server
    _, predicted = server.request("/predict", recording, "audio/wav")
    page = open_page(browser, server.url)
    assert "recording" in page.inner_text("#title") and not page.is_visible("#review")
    submit(page)
    assert_refused(page, "Choose a WAV recording first")
    wav = tmp_path / "7_jackson_3.wav"
    wav.write_bytes(recording)
    page.set_input_files("#file", str(wav))
    submit(page)
    assert page.inner_text("#verdict") == predicted["predictions"][0]["label"]
    assert "Spectrogram" in page.get_attribute("#inputs", "aria-label")
    print(f"speech: click to drawn {page.evaluate('document.body.dataset.drawnMs')} ms")
    assert_views_follow_one_step(page)
    assert_unit_picker_and_search(page)
    assert_no_serious_violations(page, axe_script)
    screenshot(page, "speech")

    text = tmp_path / "notes.wav"
    text.write_text("not a recording")
    page.set_input_files("#file", str(text))
    submit(page)
    assert_refused(page, "is not a readable WAV file")
    page.click("#examples button >> nth=0")  # a test recording, as the model hears it
    page.wait_for_function("document.body.dataset.drawnMs", timeout=60_000)
    assert "test sample labelled" in page.inner_text("#probability")
    assert not page.errors, page.errors
