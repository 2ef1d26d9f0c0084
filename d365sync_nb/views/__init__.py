"""View models: what is shown of a session, computed once.

A view model holds the figures and sentences of one thing shown (a session, a phase, an http
record); the text printer (:mod:`d365sync_nb.render`), the notebook's widget panel, the JSON
answers and the DataFrames only lay it out. :mod:`.format` is the one place numbers and
durations become text.
"""

from d365sync_nb.views.format import clock, count, duration, figure
from d365sync_nb.views.session import PhaseView, SessionView

__all__ = ["PhaseView", "SessionView", "clock", "count", "duration", "figure"]
