"""Selenium waits that survive a live page: Chromium's words for an element replaced between its
lookup and its read come as a plain WebDriverException ("unknown error: unhandled inspector error")
where the standard says stale element reference (SeleniumHQ/selenium#15401). A live page replaces its
parts on every update (tests/test_web_browser.py)."""

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

REPLACED = ("does not belong to the document", "No node with given id found")


def stale_when_replaced(predicate):
    """A wait's predicate that raises Chromium's "replaced" as StaleElementReferenceException, which the
    wait ignores (it looks again)."""
    def checked(driver):
        try:
            return predicate(driver)
        except WebDriverException as exc:
            if type(exc) is WebDriverException and any(words in (exc.msg or "") for words in REPLACED):
                raise StaleElementReferenceException(exc.msg) from exc
            raise
    return checked
