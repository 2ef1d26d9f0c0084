"""The Jupyter surface: ``%d365sync`` magics, a live widget panel, pandas tables and charts.

``%load_ext d365sync_nb`` then ``%d365sync help``. The same from Python::

    from d365sync_nb.notebook import connect, start, progress, cancel, sessions, history
    connect(demo=True); start(wait=True); history()
    requests(status="429"); diagnose(); compare(first_id, second_id)
    entities("customer"); fields("CustomersV3"); members("NoYes"); diff(); export("out")
    watch(every="15m"); watch_status(); checks(); diagnose(history=True); stop_watch()

Layout: :mod:`.magics` routes ``%d365sync NAME`` to an operation's command
(:mod:`.operations`, derived from :mod:`d365sync_nb.operations`) or to ``commands/NAME.py``
(the notebook's own: connect, start, progress, cancel, timeline, panel); :mod:`.config` is the
one ``D365Sync`` config; :mod:`.state` the notebook's connection, loop and live panels;
:mod:`.panel` and :mod:`.dashboard` the widgets; :mod:`.waiting` a cell that waits for a
session; text output is :mod:`d365sync_nb.render`.
"""

from __future__ import annotations

from d365sync_nb.notebook import frontend
from d365sync_nb.notebook.commands.cancel import cancel
from d365sync_nb.notebook.commands.connect import ConnectionInfo, connect
from d365sync_nb.notebook.commands.panel import panel
from d365sync_nb.notebook.commands.progress import progress
from d365sync_nb.notebook.commands.start import start
from d365sync_nb.notebook.commands.timeline import timeline
from d365sync_nb.notebook.commands.watch import stop_watch, watch, watch_status
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.diagnosis import DiagnosisView, WhenToSyncView
from d365sync_nb.notebook.extension import load_ipython_extension, unload_ipython_extension
from d365sync_nb.notebook.operations import FUNCTIONS
from d365sync_nb.notebook.state import get_connection, get_notices, get_panel, get_session
from d365sync_nb.notebook.waiting import SessionInterrupted
from d365sync_nb.views import charts
from d365sync_nb.views import frames as tables

# Figures returned by the charts show as images in a kernel, pyplot imported or not.
frontend.ensure_figure_display()

# The operations' functions (declared in d365sync_nb.operations): history, requests, ...
globals().update(FUNCTIONS)

__all__ = [
    "ConnectionInfo",
    "D365Sync",
    "DiagnosisView",
    "WhenToSyncView",
    *FUNCTIONS,
    "SessionInterrupted",
    "cancel",
    "charts",
    "connect",
    "get_connection",
    "get_notices",
    "get_panel",
    "get_session",
    "load_ipython_extension",
    "panel",
    "progress",
    "start",
    "stop_watch",
    "tables",
    "timeline",
    "unload_ipython_extension",
    "watch",
    "watch_status",
]
