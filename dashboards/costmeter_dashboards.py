"""House defaults and panel helpers shared by every ``*.dashboard.py`` in this directory.

Each dashboard file is thin: it calls these helpers and assigns ``dashboard``.
Every helper returns a new grafanalib object (nothing shared is mutated), and
:func:`dashboard` lays the panels out, numbers them and sets the house
defaults. :func:`render` turns a grafanalib ``Dashboard`` into the JSON that
is committed, after :func:`modernize` has replaced the fields grafanalib 0.7.1
still emits in their pre-Grafana-8 form (see docs/dashboards.md).

Conventions (kubernetes-mixin style):
- every panel and query reads the data source variable ``datasource``;
- rates use ``$__rate_interval``; spend over "the range" is
  ``increase(...[$__range])`` (never a raw lifetime ``_sum``);
- stable UIDs ``costmeter-<name>``, tags ``costmeter``, links between them;
- alert annotations from Prometheus' ``ALERTS`` series.
"""
from __future__ import annotations

import copy
import json

import attr
from grafanalib import core as g

# ---- house defaults -----------------------------------------------------------------------------

TAG = "costmeter"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39            # Grafana 10.4 / 11; the fields below are written in that schema
REFRESH = "30s"
TIME_FROM = "now-24h"
JOB = 'job=~"costmeter.*"'     # the alert rules' convention for exporter jobs (CostExporterDown)
CACHE_HIT_TARGET = 0.60        # the target cache hit ratio (green at or above it)

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"

# Budget status: how many of a budget's own thresholds (warning, critical, exceeded)
# its utilization has reached, 0-3. Compared per budget, so every budget is coloured
# by the thresholds in its own budgets.yaml entry.
BUDGET_STATUS = ("sum by (budget, period) ("
                 "budget_period:cost_budget_utilization_ratio:sum{%s} >= bool on (budget, period) group_right "
                 "budget_period_level:cost_budget_threshold_ratio:max{%s})")
STATUS_MAPPINGS = [{
    "type": "value",
    "options": {
        "0": {"text": "ok", "color": GREEN, "index": 0},
        "1": {"text": "warning", "color": YELLOW, "index": 1},
        "2": {"text": "critical", "color": ORANGE, "index": 2},
        "3": {"text": "exceeded", "color": RED, "index": 3},
    },
}]

DASHBOARDS = {   # uid -> title; links and docs use these
    "costmeter-overview": "costmeter / Overview",
    "costmeter-budgets": "costmeter / Budgets",
    "costmeter-llm": "costmeter / LLM usage",
    "costmeter-infrastructure": "costmeter / Infrastructure",
    "costmeter-billing": "costmeter / Billing",
    "costmeter-exporter": "costmeter / Exporter",
}


# ---- selectors and variables -------------------------------------------------------------------

def sel(*labels: str, **fixed: str) -> str:
    """Label matchers for the named template variables (``tenant`` -> ``tenant=~"$tenant"``)
    plus fixed ``label="value"`` matchers, without braces."""
    parts = [f'{label}=~"${label}"' for label in labels]
    parts += [f'{k}="{v}"' for k, v in fixed.items()]
    return ",".join(parts)


def datasource_variable() -> g.Template:
    return g.Template(name="datasource", label="Data source", query="prometheus", type="datasource",
                      default="default", hide=g.SHOW)


def query_variable(name: str, label: str, metric: str, match: str = "", *, multi: bool = True) -> g.Template:
    """A label_values() variable with an All option that matches everything (``.*``)."""
    series = f"{metric}{{{match}}}" if match else metric
    return g.Template(name=name, label=label, query=f"label_values({series}, {name})", dataSource=DATASOURCE,
                      includeAll=True, multi=multi, allValue=".*", default="$__all",
                      refresh=g.REFRESH_ON_TIME_RANGE_CHANGE, sort=g.SORT_ALPHA_ASC)


def tenant_variable() -> g.Template:
    return query_variable("tenant", "Tenant", "cost_provider_api_calls_total")


def provider_variable() -> g.Template:
    return query_variable("provider", "Provider", "cost_provider_api_calls_total", sel("tenant"))


def model_variable() -> g.Template:
    return query_variable("model", "Model", "cost_provider_api_calls_total", sel("tenant", "provider"))


def budget_variable() -> g.Template:
    return query_variable("budget", "Budget", "cost_budget_limit_usd")


def period_variable() -> g.Template:
    return query_variable("period", "Period", "cost_budget_limit_usd", sel("budget"))


# ---- targets -----------------------------------------------------------------------------------

def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, table: bool = False) -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, instant=instant, datasource=DATASOURCE,
                    format=g.TABLE_TARGET_FORMAT if table else g.TIME_SERIES_TARGET_FORMAT)


def _targets(exprs) -> list[g.Target]:
    """``exprs``: one expression, or (expr, legend) pairs; refIds A, B, C... in order."""
    if isinstance(exprs, str):
        exprs = [(exprs, "")]
    return [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(exprs)]


def increase_in_range(counter: str, by: str) -> str:
    """Calls of ``counter`` in the dashboard range, by ``by``, including series first seen in the
    range, whose first samples increase() cannot see (as the CostUnpricedModel alert does)."""
    return (f"sum by ({by}) (increase({counter}[$__range]) > 0 "
            f"or ({counter} > 0 unless {counter} offset $__range))")


def _size(w: int, h: int) -> g.GridPos:
    return g.GridPos(h=h, w=w, x=0, y=0)       # x and y are set by layout()


def steps(*pairs) -> list[dict]:
    """Threshold steps: ``steps(GREEN, (0.8, YELLOW), (1, RED))``."""
    out = [{"color": pairs[0], "value": None}]
    out += [{"color": c, "value": v} for v, c in pairs[1:]]
    return out


# ---- panels ------------------------------------------------------------------------------------

def row(title: str) -> g.RowPanel:
    return g.RowPanel(title=title, gridPos=_size(24, 1))


def stat(title: str, expr: str, unit: str, *, description: str = "", w: int = 6, h: int = 4,
         thresholds: list | None = None, time_from: str | None = None, decimals: int | None = None,
         mappings: list | None = None, graph: bool = False) -> g.Stat:
    """One number. ``time_from`` ("now/d", "now/M") pins the panel's range, so an
    ``increase(...[$__range])`` there means "today so far" or "this month so far"."""
    return g.Stat(title=title, description=description or None, dataSource=DATASOURCE,
                  targets=[target(expr, instant=not graph)], format=unit, decimals=decimals,
                  reduceCalc="lastNotNull", graphMode="area" if graph else "none", colorMode="value",
                  thresholds=thresholds or steps(BLUE), mappings=mappings or [], timeFrom=time_from,
                  gridPos=_size(w, h), noValue="no data")


def timeseries(title: str, exprs, unit: str, *, description: str = "", w: int = 12, h: int = 8,
               stack: bool = False, thresholds: list | None = None, threshold_style: str = "off",
               overrides: list | None = None, minimum: int | None = None, maximum: int | None = None,
               bars: bool = False, legend_calcs: list | None = None) -> g.TimeSeries:
    return g.TimeSeries(title=title, description=description or None, dataSource=DATASOURCE,
                        targets=_targets(exprs), unit=unit, gridPos=_size(w, h),
                        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none", "group": "A"},
                        fillOpacity=30 if stack else 10, drawStyle="bars" if bars else "line",
                        thresholds=thresholds or steps(GREEN), thresholdsStyleMode=threshold_style,
                        overrides=overrides or [], valueMin=minimum, valueMax=maximum,
                        legendDisplayMode="table" if legend_calcs else "list",
                        legendPlacement="right" if legend_calcs else "bottom",
                        legendCalcs=legend_calcs or [], tooltipMode="multi", tooltipSort="desc",
                        showPoints="never", lineWidth=1)


def bars(title: str, expr: str, legend: str, unit: str, *, description: str = "", w: int = 12, h: int = 8,
         time_from: str | None = None, thresholds: list | None = None) -> g.BarGauge:
    """One bar per series, from an instant query (usually ``increase(...[$__range])``)."""
    return g.BarGauge(title=title, description=description or None, dataSource=DATASOURCE,
                      targets=[target(expr, legend, instant=True)], format=unit, min=0, max=None,
                      displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT, calc="lastNotNull", allValues=False,
                      thresholds=thresholds or steps(BLUE), timeFrom=time_from, gridPos=_size(w, h))


def table(title: str, columns, *, description: str = "", w: int = 24, h: int = 8, overrides: list | None = None,
          time_from: str | None = None, sort_by: str | None = None, rename: dict | None = None,
          hide: tuple = ("Time",), links: list | None = None) -> g.Table:
    """A table of instant queries, one column each, joined on their labels
    (opencost-mixin style: format=table, merge, organize with readable names).
    ``columns``: (expr, column title, unit) triples."""
    targets, names, over = [], {}, []
    for i, (expr, name, unit) in enumerate(columns):
        ref = chr(ord("A") + i)
        targets.append(target(expr, ref=ref, instant=True, table=True))
        names[f"Value #{ref}"] = name
        over.append({"matcher": {"id": "byName", "options": name},
                     "properties": [{"id": "unit", "value": unit}]})
    names.update(rename or {})
    transformations = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {h_: True for h_ in hide}, "indexByName": {},
                                       "renameByName": names}},
    ]
    return g.Table(title=title, description=description or None, dataSource=DATASOURCE, targets=targets,
                   transformations=transformations, overrides=over + (overrides or []), timeFrom=time_from,
                   sortBy=[g.TableSortByField(displayName=sort_by, desc=True)] if sort_by else [],
                   filterable=True, gridPos=_size(w, h), links=links or [])


def color_by_status(column: str) -> dict:
    """A table override: the budget status column as coloured text (ok ... exceeded)."""
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": "mappings", "value": STATUS_MAPPINGS},
                           {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}}]}


def dashed(ref: str) -> dict:
    """A timeseries override: the series of query ``ref`` as dashed lines (thresholds, limits)."""
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0}]}


def budget_table(title: str = "Budgets", *, w: int = 24, h: int = 8) -> g.Table:
    """Every budget and period: limit, spend, utilization, forecast, status (by its own thresholds)."""
    s = sel("budget", "period")
    return table(title, [
        (f"budget_period:cost_budget_limit_usd:max{{{s}}}", "Limit", "currencyUSD"),
        (f"budget_period:cost_budget_spend_usd:sum{{{s}}}", "Spend", "currencyUSD"),
        (f"budget_period:cost_budget_utilization_ratio:sum{{{s}}}", "Utilization", "percentunit"),
        (f"budget_period:cost_budget_forecast_usd:sum{{{s}}}", "Forecast", "currencyUSD"),
        (BUDGET_STATUS % (s, s), "Status", "none"),
    ], description="Spend is summed across exporters; limit and thresholds are each budget's own "
                   "(budgets.yaml). Status counts the thresholds reached: ok, warning, critical, exceeded.",
        w=w, h=h, sort_by="Utilization", rename={"budget": "Budget", "period": "Period"},
        overrides=[color_by_status("Status"), {
            "matcher": {"id": "byName", "options": "Budget"},
            "properties": [{"id": "links", "value": [{
                "title": "Open budget",
                "url": "/d/costmeter-budgets/costmeter-budgets?var-budget=${__value.raw}&${datasource:queryparam}",
            }]}]}])


# ---- annotations and links ---------------------------------------------------------------------

def alert_annotations(match: str = 'alertname=~"Cost.*"') -> g.Annotations:
    return g.Annotations(list=[
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
        {"datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": "red", "name": "costmeter alerts",
         "expr": f'ALERTS{{alertstate="firing",{match}}}', "step": "60s", "useValueForTime": False,
         "titleFormat": "{{alertname}}", "textFormat": "{{severity}} {{budget}} {{period}} {{tenant}}",
         "tagKeys": "alertname,severity,budget,period,tenant"},
    ])


def links() -> list[g.DashboardLink]:
    return [g.DashboardLink(title="costmeter dashboards", type="dashboards", tags=[TAG], asDropdown=True,
                            includeVars=False, keepTime=True)]


# ---- the dashboard -----------------------------------------------------------------------------

def layout(panels: list) -> list:
    """Flow panels left to right in rows of 24 columns; a row panel starts a new line.
    Returns new panel objects (attr.evolve) with their gridPos set."""
    out, x, y, line_h = [], 0, 0, 0
    for p in panels:
        w, h = p.gridPos.w, p.gridPos.h
        if isinstance(p, g.RowPanel) or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        out.append(attr.evolve(p, gridPos=g.GridPos(h=h, w=w, x=x, y=y)))
        x, line_h = x + w, max(line_h, h)
        if isinstance(p, g.RowPanel):
            x, y, line_h = 0, y + h, 0
    return out


def dashboard(uid: str, description: str, panels: list, variables: list, *,
              annotations: g.Annotations | None = None) -> g.Dashboard:
    return g.Dashboard(
        title=DASHBOARDS[uid], uid=uid, description=description, tags=[TAG], timezone="utc",
        time=g.Time(TIME_FROM, "now"), refresh=REFRESH, graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        editable=True, schemaVersion=SCHEMA_VERSION, links=links(),
        annotations=annotations or alert_annotations(),
        templating=g.Templating(list=[datasource_variable()] + variables),
        panels=layout(panels),
    ).auto_panel_ids()


# ---- JSON --------------------------------------------------------------------------------------

_PANEL_LEGACY = ("cacheTimeout", "editable", "error", "height", "hideTimeOverride", "maxDataPoints", "minSpan",
                 "span", "repeat", "repeatDirection", "maxPerRow", "timeShift", "transparent", "columns",
                 "fontSize", "styles", "color", "mappings")
_DASHBOARD_LEGACY = ("rows", "style", "sharedCrosshair", "hideControls", "gnetId", "__inputs", "id")


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _modern_target(t: dict) -> dict:
    out = {"datasource": DATASOURCE, "expr": t["expr"], "refId": t["refId"], "legendFormat": t["legendFormat"],
           "editorMode": "code"}
    if t.get("instant"):
        out.update(instant=True, range=False)
    else:
        out.update(instant=False, range=True)
    if t.get("format") == g.TABLE_TARGET_FORMAT:
        out["format"] = "table"
    return out


def _modern_panel(p: dict) -> dict:
    p = {k: v for k, v in p.items() if k not in _PANEL_LEGACY and v is not None}
    kind = p["type"]
    if kind == "row":
        p = {k: p[k] for k in ("collapsed", "gridPos", "id", "panels", "title", "type")}
        return p
    p["datasource"] = DATASOURCE
    p["targets"] = [_modern_target(t) for t in p.get("targets", [])]
    p.setdefault("links", [])
    fc = p.setdefault("fieldConfig", {"defaults": {}, "overrides": []})
    fc.setdefault("overrides", [])
    d = fc["defaults"]
    for k in ("min", "max", "decimals"):
        if d.get(k) is None:
            d.pop(k, None)
    custom = d.get("custom", {})
    for k in ("axisSoftMin", "axisSoftMax"):
        if custom.get(k) is None:
            custom.pop(k, None)
    if kind == "stat":
        d["color"] = {"mode": "thresholds"}
        d.pop("custom", None)
        p["options"].update(wideLayout=True, showPercentChange=False, text={})
    elif kind == "table":
        # Grafana 10 replaced custom.displayMode by custom.cellOptions.
        mode = custom.pop("displayMode", "auto")
        custom["cellOptions"] = {"type": mode}
        custom.setdefault("inspect", False)
        d.setdefault("color", {"mode": "thresholds"})
        d.setdefault("mappings", [])
        p["options"].update(cellHeight="sm", footer={"show": False, "reducer": ["sum"], "fields": ""})
        p["options"]["sortBy"] = [{"displayName": s["displayName"], "desc": s["desc"]}
                                  for s in p["options"]["sortBy"]]
    elif kind == "bargauge":
        # grafanalib writes Grafana 6's options.fieldOptions; Grafana 7+ reads fieldConfig and reduceOptions.
        fo = p["options"].pop("fieldOptions")
        fd = fo["defaults"]
        d.update({k: v for k, v in (("unit", fd["unit"]), ("min", fd["min"]), ("max", fd["max"]),
                                    ("decimals", fd["decimals"])) if v is not None})
        d["color"] = {"mode": "thresholds"}
        d["mappings"] = fo["mappings"]
        d["thresholds"] = {"mode": "absolute", "steps": fo["thresholds"]}
        d.pop("custom", None)
        p["options"] = {"displayMode": p["options"]["displayMode"], "orientation": p["options"]["orientation"],
                        "reduceOptions": {"calcs": fo["calcs"], "fields": "", "values": False},
                        "showUnfilled": True, "valueMode": "color", "namePlacement": "auto", "sizing": "auto",
                        "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300}
    elif kind == "timeseries":
        d.setdefault("mappings", [])
        p["options"]["legend"]["showLegend"] = True      # required by Grafana 10+'s VizLegendOptions
    return p


def modernize(dash: dict) -> dict:
    """The JSON of a grafanalib 0.7.1 dashboard, in the form Grafana 10/11 saves it."""
    dash = copy.deepcopy(dash)
    for k in _DASHBOARD_LEGACY:
        dash.pop(k, None)
    dash["panels"] = [_modern_panel(p) for p in dash["panels"]]
    variables = []
    for v in dash["templating"]["list"]:
        if v["type"] == "datasource":
            variables.append({"current": {}, "hide": 0, "includeAll": False, "label": v["label"], "multi": False,
                              "name": v["name"], "options": [], "query": "prometheus", "refresh": 1, "regex": "",
                              "type": "datasource"})
        else:
            variables.append({
                "allValue": v["allValue"], "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "datasource": DATASOURCE, "definition": v["query"], "hide": v["hide"],
                "includeAll": v["includeAll"], "label": v["label"], "multi": v["multi"], "name": v["name"],
                "options": [], "query": {"query": v["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "refresh": v["refresh"], "regex": "", "sort": v["sort"], "type": "query"})
    dash["templating"] = {"list": variables}
    dash["timepicker"] = {}
    dash["links"] = [_drop_none(link) for link in dash["links"]]
    dash["fiscalYearStartMonth"] = 0
    dash["liveNow"] = False
    dash["weekStart"] = ""
    return dash


def render(d: g.Dashboard) -> str:
    """The committed JSON: modernized, sorted keys, indent 2, newline at the end."""
    from grafanalib._gen import DashboardEncoder
    raw = json.loads(json.dumps(d.to_json_data(), cls=DashboardEncoder))
    return json.dumps(modernize(raw), sort_keys=True, indent=2) + "\n"
