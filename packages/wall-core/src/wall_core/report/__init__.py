"""Static HTML pages that open from disk (no server, no network): :func:`build_report` for a run folder
(``wall report RUN_DIR``) and :func:`build_viewer` for a LeRobot dataset (``wall view DATASET``)."""

from .page import build_report, load_run
from .stats import final_loss_table, wilson_interval
from .viewer import build_viewer

__all__ = ["build_report", "build_viewer", "final_loss_table", "load_run", "wilson_interval"]
