"""The page of ``elman serve`` timed in headless Chromium, as a person uses it: the click on
"Read it" to the result drawn, for long test reviews cut to the model's 500 words; the size of
the /explain answer; the search of the test data ("Where else does the state do this?"). With
``--shots``, a screenshot of the page for each model given, as the README shows them.

    python benchmarks/page.py --text runs/imdb --data ../shared/data/aclImdb.tar.gz
    python benchmarks/page.py --text runs/imdb --series runs/gunpoint --speech runs/fsdd \\
        --data ../shared/data/aclImdb.tar.gz --shots docs

Two timings per review: the page's own (``data-drawn-ms``: from the click to the frame after
drawing), and the same wait seen from here (the click to the page's "drawn" mark, which also
holds for the page before issue 28: ``--old``, when the server runs an older elman). Medians
over ``--reviews`` reviews after one to warm up; this machine, now: compare runs side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from elman.data.imdb import read_reviews, resolve_source

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (run as a script: its neighbours)
from report import provenance  # noqa: E402
from serve import start_server  # noqa: E402

DRAWN = "document.body.dataset.drawnMs"
OLD_DRAWN = "document.getElementById('heatmap').dataset.cols == {words}"


def long_reviews(archive: str, count: int, words: int = 520) -> list[str]:
    """The first ``count`` test reviews of at least ``words`` words (the model keeps 500)."""
    texts = read_reviews(resolve_source(archive))["test"].texts
    return [text for text in texts if len(text.split()) >= words][:count]


def time_reviews(page, url: str, reviews: list[str], old: bool) -> dict:
    """Click-to-drawn for each review (the first only warms up)."""
    seen, in_page, sizes = [], [], []
    for number, review in enumerate(reviews):
        request = json.dumps({"text": review}).encode()
        answer = urllib.request.urlopen(urllib.request.Request(url + "/explain", request)).read()
        sizes.append(len(answer))
        words = len(json.loads(answer)["words"])
        page.fill("#review", review)
        if not old:
            page.evaluate(f"delete {DRAWN}")
        else:  # (the old page: its heat map's columns say it drew this review)
            page.evaluate("document.getElementById('heatmap').dataset.cols = -1")
        started = time.perf_counter()
        page.click("#read")
        page.wait_for_function(OLD_DRAWN.format(words=words) if old else DRAWN, polling=1)
        if number:  # (the first warms up)
            seen.append(1000 * (time.perf_counter() - started))
            if not old:
                in_page.append(float(page.evaluate(DRAWN)))
    return {
        "seen": statistics.median(seen),
        "in_page": statistics.median(in_page) if in_page else None,
        "bytes": statistics.median(sizes),
    }


def time_search(page, rounds: int = 10) -> float:
    """The median of ``rounds`` searches for the 5 steps before the last, 8 units (the page's
    default), timed in the page."""
    times = []
    for _ in range(rounds + 1):
        page.evaluate("delete document.getElementById('match-status').dataset.ms")
        page.click("#match")
        page.wait_for_function("document.getElementById('match-status').dataset.ms", polling=1)
        times.append(float(page.evaluate("document.getElementById('match-status').dataset.ms")))
    return statistics.median(times[1:])


def shot(browser, url: str, name: str, folder: Path) -> None:
    """The page after its first example is read, a unit picked: the screenshot the README shows."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/")
    page.wait_for_selector("#examples[data-loaded]", timeout=300_000)
    page.click("#examples button >> nth=0")
    page.wait_for_function(DRAWN, timeout=60_000)
    data = page.evaluate("({...document.getElementById('heatmap').dataset})")
    middle = float(data["top"]) + 2.5 * float(data["row"])
    x = float(data["left"]) + float(data["column"]) * int(data["cols"]) * 0.6
    page.locator("#heatmap").click(position={"x": x, "y": middle})
    page.click("#match")
    page.wait_for_function("document.getElementById('match-status').dataset.ms", timeout=60_000)
    page.screenshot(path=str(folder / f"page-{name}.png"), full_page=True)
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", help="a text model folder (max_len 500: runs/imdb)")
    parser.add_argument("--series", help="a series model folder, for its screenshot")
    parser.add_argument("--speech", help="a speech model folder, for its screenshot")
    parser.add_argument("--data", help="the IMDB archive the long reviews come from")
    parser.add_argument("--reviews", type=int, default=20)
    parser.add_argument("--old", action="store_true", help="the server runs the page before 28")
    parser.add_argument("--shots", type=Path, help="write page-KIND.png here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        print(provenance() + "\n")
        print(f"Chromium {browser.version}\n")
        if args.text and args.data:
            process, port = start_server(args.text)
            url = f"http://127.0.0.1:{port}"
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(url + "/")
                if not args.old:  # (the page has the test data's states indexed: wait for it)
                    page.wait_for_selector("#examples[data-loaded]", timeout=300_000)
                    probe = json.dumps({"pattern": [[0.0]], "units": [0]}).encode()
                    urllib.request.urlopen(urllib.request.Request(url + "/match", probe))
                reviews = long_reviews(args.data, args.reviews + 1)
                result = time_reviews(page, url, reviews, args.old)
                in_page = result["in_page"]
                print(
                    f"text, 500-word reviews: click to drawn {result['seen']:.0f} ms seen from "
                    "here" + (f", {in_page:.0f} ms in the page" if in_page else "")
                    + f"; /explain answers {result['bytes'] / 1000:.0f} kB"
                )  # fmt: skip
                if not args.old:
                    print(f"search of the test data: {time_search(page):.0f} ms (median of 10)")
            finally:
                process.terminate()
        for name in ("text", "series", "speech") if args.shots else ():
            if getattr(args, name):
                process, port = start_server(getattr(args, name))
                url = f"http://127.0.0.1:{port}"
                try:
                    shot(browser, url, name, args.shots)
                    print(f"wrote {args.shots / f'page-{name}.png'}")
                finally:
                    process.terminate()
        browser.close()


if __name__ == "__main__":
    main()
