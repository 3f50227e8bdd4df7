"""The watcher every browser test relies on sees each kind of problem, and lets through only what a test allows:
a blind watcher would let every page test pass."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.browsing import LiveServer, PageProblems, sign_in

# Each case: a script run in an opened page, and the words the problem it causes must be reported with.
PROBLEMS = [
    # An exception no script catches.
    ("setTimeout(() => { throw new Error('on purpose'); });", "uncaught JavaScript error: Error: on purpose"),
    # An error a script logs.
    ("console.error('logged on purpose');", "console error at"),
    # An error answer from the app.
    ("fetch('/api/no-such-thing');", "404 answer to GET /api/no-such-thing"),
    # Another origin, one that never leaves the machine (a CDN's name would be looked up on the network).
    ("fetch('http://127.0.0.2:9/lib.js').catch(() => {});", "request to another origin (the app must work offline)"),
]


@pytest.fixture
def watched(browser_context: BrowserContext, live_server: LiveServer) -> tuple[Page, PageProblems]:
    """A signed-in page on /grade with a watcher of its own, so that the problems caused here fail no test."""
    sign_in(browser_context, live_server)
    tab, problems = browser_context.new_page(), PageProblems(live_server.url)
    problems.watch(tab)
    tab.goto("/grade")
    tab.wait_for_load_state("networkidle")
    return tab, problems


def wait_until(tab: Page, done: Callable[[], bool], seconds: float = 10) -> None:
    """Let the page's events arrive (they come asynchronously, while Playwright waits) until `done()`."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for the page's events"
        tab.wait_for_timeout(50)


@pytest.mark.parametrize(("script", "reported"), PROBLEMS, ids=["thrown", "console", "error-answer", "other-origin"])
def test_each_kind_of_problem_is_reported(watched: tuple[Page, PageProblems], script: str,
                                          reported: str) -> None:
    tab, problems = watched
    assert problems.problems == []  # the page itself opened cleanly
    tab.evaluate(script)
    wait_until(tab, lambda: bool(problems.problems))
    assert any(reported in problem for problem in problems.problems), problems.problems
    with pytest.raises(pytest.fail.Exception, match="the pages had problems"):
        problems.check()


def test_an_allowed_answer_is_not_a_problem(watched: tuple[Page, PageProblems]) -> None:
    tab, problems = watched
    problems.allow(404, "/api/no-such-thing")
    with tab.expect_response("**/api/no-such-thing") as answer:
        tab.evaluate("fetch('/api/no-such-thing')")
    assert answer.value.status == 404  # it came, and was let through
    assert problems.problems == []
    problems.check()
