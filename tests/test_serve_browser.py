"""The page in a real browser: headless Chromium loads GET / from a test server on
127.0.0.1, fills and submits the form (from the URL's parameters), and the rendered
list must be the items the API returns, each with its label and its explain sentence.
A screenshot is kept: under $LLMREC_TEST_ARTIFACTS when set, else the test's tmp dir."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from serve_helpers import KEY, fit_small, thread_server  # first: skips the module without the [serve] extra
import httpx  # noqa: E402

from llmrec.serve import create_app  # noqa: E402

from recommender_helpers import WordEncoder  # noqa: E402

pytestmark = [pytest.mark.serve, pytest.mark.browser]

CHROMIUM = os.environ.get("LLMREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_TIMEOUT_S = 120


def _chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url``: no sandbox (tests run as root), its own profile, every
    host name but 127.0.0.1 unresolvable, no background traffic; ``--virtual-time-budget``
    lets the page's requests finish before the DOM is dumped or the screenshot taken."""
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
               "--disable-component-update", "--disable-extensions", "--disable-default-apps",
               "--metrics-recording-only", "--mute-audio", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               "--proxy-server=direct://", "--virtual-time-budget=15000", *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)


class _Items(HTMLParser):
    """The rendered results: (item id, label, explanation) per list item, the status."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, str]] = []
        self.state = None
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.state = attrs.get("data-state")
        if tag == "li" and attrs.get("class") == "item":
            self.items.append({"id": attrs.get("data-item-id"), "label": "", "why": ""})
        cls = attrs.get("class")
        self._in = {"label": "label", "why": "why"}.get(cls) if self.items else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in:
            self.items[-1][self._in] += data


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_page_shows_recommendations_with_their_explanations(tmp_path):
    rec, (interactions, _, _) = fit_small()
    rec.save(tmp_path / "model")
    app = create_app(tmp_path / "model", api_key=KEY, encoder=WordEncoder())
    user = int(interactions["user_id"].iloc[0])
    artefacts = Path(os.environ.get("LLMREC_TEST_ARTIFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    with thread_server(app) as url:
        expected = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 5, "query": "a chef in a kitchen",
                                                         "diversity": 0.2}).json()
        reasons = [httpx.post(f"{url}/explain", json={"user_id": user, "item_id": i}).json()["text"]
                   for i in expected["items"]]
        page = f"{url}/?" + urlencode({"user_id": user, "k": 5, "query": "a chef in a kitchen",
                                       "diversity": 0.2, "run": 1})
        dumped = _chromium(page, tmp_path / "profile", "--dump-dom")
        assert dumped.returncode == 0, dumped.stderr[-3000:]
        screenshot = artefacts / "serve_page.png"
        shot = _chromium(page, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=900,1300")
        assert shot.returncode == 0, shot.stderr[-3000:]
        visitor = _chromium(f"{url}/?" + urlencode({"clicks": "1, 2, 3", "k": 4, "run": 1}),
                            tmp_path / "profile", "--dump-dom")
        expected_visitor = httpx.post(f"{url}/recommend/history", json={"items": [1, 2, 3], "k": 4}).json()
    parsed = _Items()
    parsed.feed(dumped.stdout)
    assert parsed.state == "done", dumped.stdout[-3000:]
    assert [int(item["id"]) for item in parsed.items] == expected["items"]
    assert [item["label"] for item in parsed.items] == expected["labels"]
    assert [item["why"] for item in parsed.items] == reasons
    assert all(item["why"].startswith("Score") for item in parsed.items)
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parsed = _Items()
    parsed.feed(visitor.stdout)
    assert parsed.state == "done", visitor.stdout[-3000:]
    assert [int(item["id"]) for item in parsed.items] == expected_visitor["items"]
    assert not re.search(r"<script[^>]+src=", dumped.stdout)  # self-contained: nothing loaded from elsewhere
