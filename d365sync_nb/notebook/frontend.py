"""Can the frontend render widgets? Decides between the widget panel and the text display.

Order: the ``D365Sync.display`` trait (``widget``/``text``), then ``$D365SYNC_DISPLAY``, then
heuristics. Widgets need an ipykernel kernel *and* a frontend that renders them; executing clients
built on jupyter_client (nbconvert, nbclient, nbval, papermill) render none, and their
``execute_request`` carries no ``cellId`` metadata, which JupyterLab, Notebook 7 and VS Code
send. Voilà (``SERVER_SOFTWARE=voila/…``) and an opened ipywidgets control comm (a widget manager
asked for state) also mean widgets render.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DISPLAY_MODES = ("auto", "widget", "text")
ENV_VAR = "D365SYNC_DISPLAY"


def current_shell() -> Any:
    """The running IPython shell, or None."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def current_kernel() -> Any:
    """The ipykernel kernel object when running inside one, else None."""
    if "ipykernel" not in sys.modules:
        return None
    return getattr(current_shell(), "kernel", None)


def use_widgets(mode: str = "auto") -> bool:
    """True when sessions should be shown as an ipywidgets panel, False for text."""
    kernel = current_kernel()
    if kernel is None or mode == "text":
        return False
    if mode == "widget":
        return True
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in ("widget", "text"):
        return forced == "widget"
    return frontend_renders_widgets(kernel)


def frontend_renders_widgets(kernel: Any) -> bool:
    """Heuristics on the request being executed and the kernel's process."""
    if os.environ.get("SERVER_SOFTWARE", "").lower().startswith("voila"):
        return True
    try:
        parent = kernel.get_parent() or {}
    except Exception:  # older kernels: get_parent(channel) or no parent yet
        parent = {}
    if "cellId" in (parent.get("metadata") or {}):
        return True
    widget_module = sys.modules.get("ipywidgets.widgets.widget")
    return getattr(getattr(widget_module, "Widget", None), "_control_comm", None) is not None


def ensure_figure_display() -> None:
    """In a kernel, make returned matplotlib figures display as images even when pyplot (which
    sets up the inline backend) was never imported; existing figure formatters are kept."""
    shell = current_shell()
    if shell is None or current_kernel() is None:
        return
    from matplotlib.figure import Figure

    formatters = shell.display_formatter.formatters
    for formatter in formatters.values():
        try:
            formatter.lookup_by_type(Figure)
            return
        except KeyError:
            continue
    from IPython.core.pylabtools import select_figure_formats

    select_figure_formats(shell, {"png"}, bbox_inches="tight")


def show(obj: Any) -> None:
    """Display ``obj`` in the running cell (IPython's ``display``)."""
    from IPython.display import display

    display(obj)
