"""PromQL and panel helpers the Flakehouse dashboards share (scripts/dashboards.py): queries
built one way, and every panel and dashboard with the same datasource, layout and links."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from grafana_foundation_sdk.builders import common, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)

TAG = "flakehouse"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana widens this to at least four scrape intervals, so rate() always has two samples.
RATE_WINDOW = "$__rate_interval"

TIMESERIES_HEIGHT = 8
STAT_HEIGHT = 4
P = TypeVar("P", timeseries.Panel, stat.Panel, statetimeline.Panel)


# --- PromQL -----------------------------------------------------------------------------------


def series(metric: str, matchers: str = "") -> str:
    """`metric{matchers}`, with braces only when there is something to match."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)}) " if labels else ""


def aggregate(op: str, metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    return f"{op}{by(labels)}({series(metric, matchers)})"


def sum_rate(metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    return f"sum{by(labels)}(rate({series(metric, matchers)}[{RATE_WINDOW}]))"


def sum_increase(metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    """For rare events, where a count per interval reads better than 0.003/s."""
    return f"sum{by(labels)}(increase({series(metric, matchers)}[{RATE_WINDOW}]))"


def state_number(metric: str, label: str, states: Sequence[str], labels: Sequence[str]) -> str:
    """For a gauge that is 1 for its series' current state (`label`) and 0 for the others: the
    current state of each `labels` group as a number, 1 for the first of `states`, and so on."""
    numbered = []
    for number, state in enumerate(states, start=1):
        selector = series(metric, f'{label}="{state}"')
        numbered.append(f"{number} * ({selector} == 1)")
    return f"max{by(labels)}({' or '.join(numbered)})"


def quantile(q: float, histogram: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    buckets = sum_rate(f"{histogram}_bucket", [*labels, "le"], matchers)
    return f"histogram_quantile({q}, {buckets})"


# --- panels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def latencies(
    histogram: str, quantiles: Sequence[float], labels: Sequence[str] = (), matchers: str = ""
) -> list[Query]:
    prefix = "".join(f"{{{{{label}}}}} " for label in labels)
    return [
        Query(quantile(q, histogram, labels, matchers), f"{prefix}p{round(q * 100)}")
        for q in quantiles
    ]


def _common(panel: P, title: str, description: str, unit: str, queries: Sequence[Query]) -> P:
    """What every panel shares: the datasource variable, and refIds A, B, … in query order."""
    panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    for index, query in enumerate(queries):
        panel.with_target(
            prometheus.Dataquery()
            .ref_id(string.ascii_uppercase[index])
            .expr(query.expr)
            .legend_format(query.legend)
        )
    return panel


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    panel = (
        timeseries.Panel()
        .span(width)
        .height(TIMESERIES_HEIGHT)
        .min(0)
        .fill_opacity(10)
        .legend(legend)
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
        .stacking(
            common.StackingConfig().mode(StackingMode.NORMAL if stacked else StackingMode.NONE)
        )
    )
    return _common(panel, title, description, unit, queries)


def single(
    title: str, description: str, query: Query, steps: Sequence[tuple[float | None, str]]
) -> stat.Panel:
    """A stat coloured by `steps`: (lowest value, colour), the first with None as its value."""
    thresholds = (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value, color) for value, color in steps])
    )
    panel = (
        stat.Panel()
        .span(8)
        .height(STAT_HEIGHT)
        .thresholds(thresholds)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.BACKGROUND)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _common(panel, title, description, units.Short, [query])


def timeline(
    title: str, description: str, query: Query, states: Sequence[tuple[str, str]]
) -> statetimeline.Panel:
    """A state timeline of a query that gives each series a state's number (state_number): 1
    shown as the first of `states` ((text, colour) each), and so on."""
    mapping = ValueMap(
        options={
            str(number): ValueMappingResult(text=text, color=color, index=number - 1)
            for number, (text, color) in enumerate(states, start=1)
        }
    )
    panel = (
        statetimeline.Panel()
        .span(12)
        .height(TIMESERIES_HEIGHT)
        .mappings([mapping])
        .show_value(VisibilityMode.NEVER)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    return _common(panel, title, description, units.Short, [query])


BAD_ABOVE_ZERO = [(None, "green"), (1, "red")]
BAD_AT_ZERO = [(None, "red"), (1, "green")]


# --- dashboards -------------------------------------------------------------------------------

Section = tuple[str, list[timeseries.Panel | stat.Panel | statetimeline.Panel]]


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def assemble(
    title: str,
    uid: str,
    description: str,
    variables: Sequence[db.DatasourceVariable | db.QueryVariable],
    sections: Sequence[Section],
) -> db.Dashboard:
    builder = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        # An empty list rather than the SDK's default of none: Grafana's dashboard model
        # expects `annotations.list`, where it adds its built-in annotation.
        .annotations([])
        .link(
            db.DashboardLink("Flakehouse")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        builder.with_variable(variable)
    for name, panels in sections:
        builder.with_row(db.Row(name))
        for panel in panels:
            builder.with_panel(panel)
    return builder
