"""Report layer: charts, formatted tables and the self-contained HTML report.

It only formats what an experiment produced; it never computes weights or runs backtests.
"""

from __future__ import annotations

from dynafolio.report.html import write_report
from dynafolio.report.tables import format_table

__all__ = ["format_table", "write_report"]
