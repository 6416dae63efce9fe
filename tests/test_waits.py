"""The browser tests' waits (tests/waits.py), without a browser."""

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from .waits import stale_when_replaced  # noqa: E402


def test_an_element_chromium_says_was_replaced_is_looked_up_again_and_other_errors_are_not():
    tries = []

    def replaced_once(driver):
        tries.append(driver)
        if len(tries) == 1:
            raise WebDriverException('unknown error: unhandled inspector error: {"code":-32000,'
                                     '"message":"Node with given id does not belong to the document"}')
        return "found"

    wait = WebDriverWait(object(), 5, poll_frequency=0.01, ignored_exceptions=(StaleElementReferenceException,))
    assert wait.until(stale_when_replaced(replaced_once)) == "found" and len(tries) == 2
    with pytest.raises(WebDriverException, match="chrome not reachable"):
        wait.until(stale_when_replaced(lambda d: (_ for _ in ()).throw(WebDriverException("chrome not reachable"))))
