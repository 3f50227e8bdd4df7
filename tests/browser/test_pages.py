"""Every page in the navigation opens in a real browser with no JavaScript error and no failed request, the
navigation leads where it says, the favicon answers, and the access token travels in a cookie."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.browsing import LiveServer, PageProblems, screenshot

# The navigation as a user sees it, in order: (section, path, label).
NAV_PAGES = [
    ("datasets", "/datasets", "Datasets"),
    ("train", "/train", "Train"),
    ("models", "/models", "Models"),
    ("grade", "/grade", "Grade"),
]


def open_page(page: Page, path: str) -> None:
    """Go to `path` and wait until its scripts have fetched what they fetch when the page opens."""
    response = page.goto(path)
    assert response is not None and response.ok, f"{path}: {response.status if response else 'no answer'}"
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize(("section", "path", "label"), NAV_PAGES)
def test_a_page_opens_with_no_error_and_is_marked_current(page: Page, section: str, path: str, label: str) -> None:
    open_page(page, path)
    expect(page.locator("body")).to_have_attribute("data-section", section)
    expect(page).to_have_title(re.compile(r"· cardmetry$"))
    expect(page.locator("h1")).to_be_visible()
    current = page.locator("nav a[aria-current=page]")
    expect(current).to_have_attribute("href", path)
    expect(current).to_have_text(label)
    screenshot(page, f"page-{section}")


def test_the_navigation_lists_every_page_and_each_link_leads_there(page: Page) -> None:
    open_page(page, NAV_PAGES[0][1])
    nav = page.locator("header nav")
    expect(nav.locator("a")).to_have_text([label for _, _, label in NAV_PAGES])
    for section, path, label in NAV_PAGES:
        nav.get_by_role("link", name=label, exact=True).click()  # in the nav: pages link each other in text too
        page.wait_for_url(f"**{path}")
        page.wait_for_load_state("networkidle")
        expect(page.locator("body")).to_have_attribute("data-section", section)


def test_the_home_page_is_the_train_page(page: Page) -> None:
    open_page(page, "/")
    assert page.url.endswith("/train")
    open_page(page, "/grade")
    page.locator("header .brand").click()  # the name in the corner leads home too
    page.wait_for_url("**/train")
    page.wait_for_load_state("networkidle")


def test_the_favicon_the_pages_link_answers(page: Page) -> None:
    open_page(page, "/datasets")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href, "the pages link no icon"
    icon = page.request.get(href)
    assert icon.status == 200, f"{href}: {icon.status}"
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.body()[:4] == b"\x00\x00\x01\x00"  # the ICO header: reserved 0, type 1 (icon)


def test_the_token_in_the_url_signs_the_browser_in_with_a_cookie(
    browser_context: BrowserContext, live_server: LiveServer, problems: PageProblems
) -> None:
    tab = browser_context.new_page()  # a fresh context: no cookie yet
    problems.allow(401, "/datasets")  # the first visit, without the token
    problems.watch(tab)
    first = tab.goto("/datasets")
    assert first is not None and first.status == 401
    opened = tab.goto(f"/?token={live_server.token}")  # the URL `cardmetry serve` prints
    assert opened is not None and opened.ok and tab.url.endswith("/train")
    [cookie] = [c for c in browser_context.cookies() if c["name"] == "cardmetry_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"  # out of reach of scripts and other sites
    again = tab.goto("/datasets")  # the cookie alone now opens the pages
    assert again is not None and again.ok and "token" not in tab.url
    tab.wait_for_load_state("networkidle")
    problems.check()
