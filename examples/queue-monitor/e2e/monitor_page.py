"""The queue monitor's window, driven through WebDriver: what a person would click and read.

Every read waits for a condition (a count reached, a row present, a log line written),
polling the page, so a slow machine makes the test slower, not red.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.remote.remote_connection import RemoteConnection
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

# The page re-renders a table when what it shows changes: an element read a moment ago
# may be gone; reading again is the answer.
_TRANSIENT = (NoSuchElementException, StaleElementReferenceException)
COMMAND_TIMEOUT_S = 120


class Monitor:
    def __init__(self, server_url: str, app: Path) -> None:
        options = ArgOptions()
        options.set_capability("browserName", "wry")
        options.set_capability("tauri:options", {"application": str(app)})
        # A bound on every WebDriver command: a command the browser never answers (seen once:
        # a screenshot) fails the test instead of hanging it.
        config = ClientConfig(remote_server_addr=server_url, timeout=COMMAND_TIMEOUT_S)
        connection = RemoteConnection(client_config=config)
        self.driver: WebDriver = webdriver.Remote(command_executor=connection, options=options)

    # ------------------------------------------------------------------ reading

    def wait(self, condition: Callable[[], object], what: str, timeout_s: float = 60) -> None:
        try:
            WebDriverWait(
                self.driver, timeout_s, poll_frequency=0.2, ignored_exceptions=_TRANSIENT
            ).until(lambda _: condition())
        except Exception as e:
            raise AssertionError(f"waited {timeout_s} s for {what}; {self.summary()}") from e

    def text(self, element_id: str) -> str:
        """The element's text as the page set it (not as laid out: no ellipsis, no wrap)."""
        element = self.driver.find_element(By.ID, element_id)
        return str(element.get_property("textContent")).strip()

    def shown(self, element_id: str) -> bool:
        return bool(self.driver.find_element(By.ID, element_id).is_displayed())

    def number(self, element_id: str) -> int:
        return int(self.text(element_id))

    def row_ids(self, tbody_id: str) -> list[str]:
        script = "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset.id)"
        return [str(i) for i in self.driver.execute_script(script, f"#{tbody_id} tr")]

    def log_lines(self, kind: str | None = None) -> list[str]:
        """The event log's lines of one kind (all kinds: None), newest first."""
        script = (
            "return [...document.querySelectorAll('#log li')]"
            ".map(li => [li.dataset.kind, li.textContent])"
        )
        lines = self.driver.execute_script(script)
        return [str(text) for k, text in lines if kind is None or k == kind]

    def logged(self, kind: str, fragment: str) -> bool:
        return any(fragment in line for line in self.log_lines(kind))

    def summary(self) -> str:
        """What the window shows, for a failure message."""
        try:
            ids = [
                "sidecar-state",
                "breaker",
                "count-pending",
                "count-processing",
                "count-completed",
                "count-failed",
                "worker-state",
                "outbox-app-online",
                "progress-dispatched",
                "progress-succeeded",
                "progress-retried",
                "progress-dead",
                "error",
            ]
            shown = {i: self.text(i) for i in ids}
            return f"the window shows {shown}; last events: {self.log_lines()[:8]}"
        except WebDriverException as e:
            return f"(the window could not be read: {e.msg})"

    # ------------------------------------------------------------------ acting

    def wait_ready(self) -> None:
        self.wait(lambda: self.text("sidecar-state") == "ready", "the sidecar to be ready")
        self.wait(
            lambda: self.text("endpoint-url").startswith("http://127.0.0.1:"), "the endpoint's URL"
        )

    def _fill(self, element_id: str, value: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        if value:  # WebDriver refuses to type nothing
            field.send_keys(value)

    def push(
        self,
        *,
        count: int = 1,
        priority: str = "normal",
        retries: int = 3,
        payload: str = '{"note": "hello"}',
        key: str = "",
        delay_ms: int = 0,
    ) -> list[str]:
        """Fill in the push form, submit it, and return the ids the queue gave the items."""
        before = self.text("push-result")
        self._fill("push-payload", payload)
        Select(self.driver.find_element(By.ID, "push-priority")).select_by_visible_text(priority)
        self._fill("push-key", key)
        self._fill("push-delay", str(delay_ms))
        self._fill("push-retries", str(retries))
        self._fill("push-count", str(count))
        self.driver.find_element(By.ID, "push-submit").click()
        self.wait(lambda: self.text("push-result") not in (before, ""), f"{count} item(s) pushed")
        result = self.driver.find_element(By.ID, "push-result")
        ids = str(result.get_attribute("data-ids")).split()
        assert len(ids) == count, (ids, self.text("push-result"))
        return ids

    def set_endpoint(self, mode: str) -> None:
        self.driver.find_element(By.ID, f"endpoint-{mode}").click()
        self.wait(
            lambda: self.logged("action", f"endpoint switched to {mode}"),
            f"the endpoint to switch to {mode}",
        )

    def requeue(self, item_id: str) -> None:
        self.driver.find_element(
            By.CSS_SELECTOR, f'#dead-letters tr[data-id="{item_id}"] button.requeue'
        ).click()
        self.wait(lambda: self.logged("action", f"requeued {item_id}"), f"{item_id} requeued")

    def toggle_pause(self, paused: bool) -> None:
        self.driver.find_element(By.ID, "pause-toggle").click()
        self.wait(
            lambda: self.shown("paused") == paused,
            "the queue to be paused" if paused else "the queue to be resumed",
        )

    def quit_app(self) -> None:
        """Click Quit; the window closes and the app exits."""
        button = self.driver.find_element(By.ID, "quit")
        # The window may be gone before the click is answered: the test then checks the
        # processes, which is what counts.
        with contextlib.suppress(WebDriverException):
            button.click()

    def end_session(self) -> None:
        # After Quit there is no browser left for the session; ending it may say so.
        with contextlib.suppress(WebDriverException):
            self.driver.quit()

    # ------------------------------------------------------------------ HTTP outbox

    def outbox_mode(self) -> None:
        self.driver.find_element(By.ID, "mode-outbox").click()
        self.wait(lambda: self.shown("outbox-panel"), "the HTTP outbox panel")
        self.wait(lambda: self.text("outbox-app-online") == "online", "the outbox's status")

    def enqueue_requests(
        self, url: str, *, count: int, keys: str = "", retries: int = 3, hold: bool = False
    ) -> list[str]:
        """Fill in the outbox form, submit it, and return the ids, in the order enqueued."""
        result = self.driver.find_element(By.ID, "outbox-result")
        before = result.get_attribute("data-ids")
        self._fill("outbox-url", url)
        self._fill("outbox-keys", keys)
        self._fill("outbox-count", str(count))
        self._fill("outbox-retries", str(retries))
        hold_box = self.driver.find_element(By.ID, "outbox-hold")
        if hold_box.is_selected() != hold:
            hold_box.click()
        self.driver.find_element(By.ID, "outbox-enqueue").click()
        self.wait(
            lambda: result.get_attribute("data-ids") not in (before, None, ""),
            f"{count} request(s) enqueued to {url}",
        )
        ids = str(result.get_attribute("data-ids")).split()
        assert len(ids) == count, (ids, self.text("outbox-result"))
        return ids

    def destination_state(self, origin: str) -> str | None:
        """The state the destinations table shows for ``origin`` (None: not listed)."""
        script = (
            "const row = [...document.querySelectorAll('#outbox-destinations tr')]"
            ".find(r => r.dataset.destination === arguments[0]);"
            "return row ? row.dataset.state : null"
        )
        state = self.driver.execute_script(script, origin)
        return None if state is None else str(state)

    def wait_destination(self, origin: str, state: str, timeout_s: float = 60) -> None:
        self.wait(
            lambda: self.destination_state(origin) == state,
            f"{origin} shown {state} (shown: {self.destination_state(origin)})",
            timeout_s,
        )

    def set_app_online(self, online: bool) -> None:
        self.driver.find_element(By.ID, "outbox-online-toggle").click()
        shown = "online" if online else "offline"
        self.wait(lambda: self.text("outbox-app-online") == shown, f"the app {shown}")

    def set_token(self, token: str) -> None:
        self._fill("outbox-token", token)
        self.driver.find_element(By.ID, "outbox-set-headers").click()
        self.wait(lambda: self.logged("action", "headers set for"), "the headers set")

    def dead_requests(self) -> dict[str, str]:
        """The dead requests the outbox panel shows: id -> HTTP status."""
        script = (
            "return [...document.querySelectorAll('#outbox-dead tr')]"
            ".map(r => [r.dataset.id, r.dataset.status])"
        )
        return {str(i): str(status) for i, status in self.driver.execute_script(script)}

    def held_requests(self) -> list[str]:
        """The ids the outbox panel shows awaiting approval."""
        return self.row_ids("outbox-held")

    def approve(self, item_id: str, *, release: bool) -> None:
        """Click Release (or Reject) on a held request; wait for the window to say it did."""
        action = "release" if release else "reject"
        self.driver.find_element(
            By.CSS_SELECTOR, f'#outbox-held tr[data-id="{item_id}"] button.{action}'
        ).click()
        done = "released" if release else "rejected"
        self.wait(lambda: self.logged("action", f"{done} {item_id}"), f"{item_id} {done}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(path)), f"no screenshot at {path}"
