"""``%d365sync watch``: keep the connected environment's cache current from the notebook.

The watch runs as a task on the kernel's event loop, so cells keep running while it waits for
its next check. Its status line ("watching: next check 14:00 UTC; last check 13:00: up to date
(10.0.41)") is a widget that repaints itself, and a sync it starts gets its own live panel
below it. ``--stop`` ends it (a running sync is cancelled), ``--status`` shows it with the
recent checks. Notifications: ``--notify teams:URL`` etc., and ``jupyter`` (the default here):
a line under the status line (and in ``%d365sync panel``), plus a JupyterLab toast through
ipylab when installed (``pip install 'd365sync_nb[jupyter]'``; :mod:`..notices`).
A kernel restart ends the watch; the next ``connect`` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import html
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from d365sync_nb.automation import (
    Notice,
    NotifyTarget,
    Schedule,
    Watcher,
    WatchTarget,
    event_text,
    parse_duration,
    set_jupyter_sink,
)
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import SyncStrategy
from d365sync_nb.notebook.frontend import show
from d365sync_nb.notebook.live_output import LiveOutput
from d365sync_nb.notebook.notices import notice_line
from d365sync_nb.notebook.panel import SessionPanel, live_panel
from d365sync_nb.notebook.state import state
from d365sync_nb.operations import watch as spec
from d365sync_nb.store.checks import CheckRecord

NAME = "watch"
SUMMARY = "keep the cache current: check the version --every 15m or --cron, sync when due, notify"
EVENTS_KEPT = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The watch's arguments as declared once (:mod:`d365sync_nb.operations.watch`), plus the
    notebook's ``--stop`` and ``--status``."""
    when = parser.add_mutually_exclusive_group()
    for arg in spec.SCHEDULE:
        arg.add_to(when)
    when.add_argument("--stop", action="store_true", help="stop the watch (cancels its sync)")
    when.add_argument("--status", action="store_true", help="the status line and recent events")
    for arg in spec.OPTIONS:
        arg.add_to(parser)
    spec.add_notify(parser)


@dataclass(eq=False)
class NotebookWatch:
    """The notebook's watch: its watcher, target, task, recent events and its view."""

    watcher: Watcher
    target: WatchTarget
    future: Any = None  # the running task (kernel loop) or concurrent future (thread loop)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    notices: list[str] = field(default_factory=list)
    view: WatchView | None = None
    _waiters: list[Callable[[CheckRecord], None]] = field(default_factory=list, repr=False)

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()

    def status_line(self) -> str:
        return self.target.status_line(watching=self.running)

    def wait_for_check(
        self, until: Callable[[CheckRecord], bool] | None = None, *, timeout: float = 300.0
    ) -> CheckRecord:
        """Block the cell until the watch records its next check (one for which ``until``
        holds, if given) and return it; the watch and its sync keep running meanwhile."""
        _, bridge = state.require()
        return bridge.run(self._next_check(until, timeout))

    async def _next_check(
        self, until: Callable[[CheckRecord], bool] | None, timeout: float
    ) -> CheckRecord:
        loop = asyncio.get_running_loop()
        found: asyncio.Future[CheckRecord] = loop.create_future()

        def on_check(record: CheckRecord) -> None:
            if not found.done() and (until is None or until(record)):
                found.set_result(record)

        self._waiters.append(on_check)
        try:
            async with asyncio.timeout(timeout):
                while not found.done():
                    if not self.running:
                        raise ConfigurationError("The watch has stopped: no further check")
                    await asyncio.wait([found], timeout=0.5)
            return found.result()
        except TimeoutError:
            raise ConfigurationError(f"No such check within {timeout:g} s") from None
        finally:
            self._waiters.remove(on_check)

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event_text(event))
        if event["event"] == "check" and self.target.last is not None:
            for waiter in list(self._waiters):
                waiter(self.target.last)
        if self.view is not None:
            self.view.on_event(self, event)

    def on_status(self, target: WatchTarget) -> None:
        if self.view is not None:
            self.view.repaint(self)
        if state.dashboard is not None and state.watch is self:  # %d365sync panel shows it too
            state.dashboard.show_watch(self.status_line())

    def notice(self, notice: Notice) -> None:
        """The ``jupyter`` target (called on the loop): a line under the status line, and the
        kernel's notices (a JupyterLab toast where ipylab can show one)."""
        self.notices.append(notice_line(notice))
        if self.view is not None:
            self.view.repaint(self)
        if state.bridge is not None:
            state.bridge.spawn(state.notices.tell(notice))

    def __str__(self) -> str:
        lines = [self.status_line(), *(f"notice: {n}" for n in self.notices[-3:])]
        return "\n".join([*lines, *list(self.events)[-5:]])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


class WatchView:
    """The widget: the status line, notices, and the live panel of a sync the watch started.

    Shown with a display id (:class:`LiveOutput`), its mimebundle also carries a ``text/plain``
    and ``text/html`` rendering of the watch's state and the last sync's card, republished on
    each of the watch's events, so a saved notebook shows where the watch was left."""

    def __init__(self, watch: NotebookWatch) -> None:
        import ipywidgets as widgets

        self.watch = watch
        self.panel: SessionPanel | None = None
        self.output = LiveOutput("watch", self._repr_mimebundle_)
        self.status = widgets.HTML().add_class("d365sync-watch-status")
        self.notices = widgets.HTML().add_class("d365sync-watch-notices")
        self.sessions = widgets.VBox().add_class("d365sync-watch-sessions")
        self.widget = widgets.VBox([self.status, self.notices, self.sessions]).add_class(
            "d365sync-watch"
        )
        self.repaint(watch)

    def repaint(self, watch: NotebookWatch) -> None:
        self.status.value = f"<b>{html.escape(watch.status_line())}</b>"
        self.notices.value = "".join(
            f"<div>🔔 {html.escape(text)}</div>" for text in watch.notices[-3:]
        )
        self.output.refresh(key=(watch.status_line(), len(watch.notices), len(watch.events)))

    def on_event(self, watch: NotebookWatch, event: dict[str, Any]) -> None:
        if event["event"] == "sync_started" and event.get("session_id"):
            manager, bridge = state.require()
            self.panel = live_panel(state.panels, manager, bridge, event["session_id"])
            self.sessions.children = (self.panel.widget,)
        self.repaint(watch)

    def _ipython_display_(self) -> None:
        self.output.show()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        data = self.widget._repr_mimebundle_(**kwargs) or {}
        text = str(self.watch)
        card = ""
        if self.panel is not None:
            text += "\n" + self.panel.text()
            card = self.panel.html()
        notices = "".join(
            f"<div>🔔 {html.escape(n)}</div>" for n in self.watch.notices[-3:]
        )
        data["text/plain"] = text
        data["text/html"] = (
            f"<div><b>{html.escape(self.watch.status_line())}</b>{notices}{card}</div>"
        )
        return data


def watch(
    every: str | None = None,
    cron: str | None = None,
    *,
    strategy: str | None = None,
    notify: list[str] | None = None,
    retry_after: str = spec.RETRY_AFTER.default,
    once: bool = False,
    display: bool = True,
) -> NotebookWatch | CheckRecord:
    """Watch the connected environment: check its version ``every`` DURATION (``"15m"``) or at
    ``cron`` times, sync when due (default strategy incremental), notify (``jupyter`` unless
    ``notify`` says otherwise). Returns at once; the watch runs on the kernel's loop.
    ``once``: one check now (and its sync), waited for; returns its record."""
    manager, bridge = state.require()
    current = _current()
    if current is not None and current.running:
        raise ConfigurationError(
            f"A watch is already running ({current.status_line()}); stop it with "
            "%d365sync watch --stop"
        )
    parsed = SyncStrategy.parse(strategy or spec.STRATEGY.default)
    retry_base = parse_duration(retry_after)
    schedule = Schedule(every=60.0) if once else Schedule.parse(every=every, cron=cron)
    targets = [NotifyTarget.parse(t) for t in (notify if notify is not None else ["jupyter"])]
    target = WatchTarget(manager, schedule, parsed, targets, name=manager.settings.profile)
    watcher = Watcher([target], retry_base=retry_base, started_by="notebook")
    nb = NotebookWatch(watcher, target)
    watcher.on_event, watcher.on_status = nb.on_event, nb.on_status
    set_jupyter_sink(nb.notice)
    if any(t.kind == "jupyter" for t in targets) and state.use_widgets():
        state.notices.toaster.prepare(bridge.loop)  # in this cell: see notices.py
    if once:
        (record,) = bridge.run(watcher.run(once=True))
        if display:
            print("\n".join(nb.events))
        return record
    if display and state.use_widgets():
        nb.view = WatchView(nb)
    nb.future = bridge.submit(watcher.run())
    state.watch = nb
    if nb.view is not None:
        show(nb.view)
    elif display:
        print(f"Watching {manager.settings.base_url} ({schedule}, '{parsed}'); "
              "%d365sync watch --status shows it, --stop ends it.")  # fmt: skip
    return nb


def stop_watch(*, display: bool = True) -> NotebookWatch | None:
    """Stop the notebook's watch and wait until it has stopped (a running sync is cancelled
    and recorded cancelled); None when no watch runs."""
    current = _current()
    if current is None or not current.running:
        if display:
            print("No watch is running.")
        return None
    _, bridge = state.require()
    current.watcher.stop()
    bridge.run(_ended(current.future))
    if display:
        print(f"Stopped the watch; {current.status_line()}")
    return current


def watch_status() -> NotebookWatch | None:
    """The notebook's watch (``str()`` is its status line, notices and last events)."""
    current = _current()
    if current is None:
        print("No watch started in this kernel; %d365sync checks lists the recorded checks.")
    return current


def _current() -> NotebookWatch | None:
    found = state.watch
    return found if isinstance(found, NotebookWatch) else None



async def _ended(future: Any) -> None:
    if isinstance(future, asyncio.Future):
        await asyncio.wait([future])
    else:
        await asyncio.wrap_future(future)


def run(args: argparse.Namespace) -> Any:
    if args.stop:
        stop_watch()  # it says what it stopped
        return None
    if args.status:
        return watch_status()
    if not (args.once or args.every or args.cron):
        raise ConfigurationError("Give --every DURATION, --cron EXPR, --once, --stop or --status")
    found = watch(
        args.every,
        args.cron,
        strategy=args.strategy,
        notify=args.notify,
        retry_after=args.retry_after,
        once=args.once,
    )
    del found  # shown already: the widget, or the line saying it watches (--once: its events)
    return None
