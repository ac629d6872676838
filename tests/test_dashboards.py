"""The committed dashboards: regenerated from their grafanalib sources without drift, and
checked like LiteLLM's and the mixins' dashboard tests do (ids, grid, data source, metric names)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import requests

from dashboard_support import (DASHBOARD_DIR, DATASOURCE, PROMETHEUS_SERIES, REPO, SPEC_METRICS, load_dashboards,
                               metric_names, panels, queries, recording_rules, spec_series)
from exporter_support import ExporterProcess

sys.path.insert(0, DASHBOARD_DIR)
import generate  # noqa: E402  dashboards/generate.py

UIDS = {"costmeter-overview", "costmeter-budgets", "costmeter-llm", "costmeter-infrastructure",
        "costmeter-billing", "costmeter-exporter"}
DASHBOARDS = load_dashboards()


def test_every_source_regenerates_to_the_committed_json():
    sources = generate.sources()
    assert {os.path.basename(generate.json_path(s)) for s in sources} == set(DASHBOARDS), \
        "every NAME.dashboard.py has its NAME.json and every JSON has a source"
    for src in sources:
        with open(generate.json_path(src), encoding="utf-8") as f:
            committed = f.read()
        assert generate.generate(src) == committed, \
            f"{os.path.relpath(generate.json_path(src), REPO)} is out of date: run python dashboards/generate.py"
        assert committed == json.dumps(json.loads(committed), sort_keys=True, indent=2) + "\n"


def test_generate_check_fails_on_drift(tmp_path):
    """The --check mode the docs tell people to run really fails when a JSON differs (on a copy)."""
    import shutil
    copy = tmp_path / "dashboards"
    shutil.copytree(DASHBOARD_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    script = str(copy / "generate.py")
    assert subprocess.run([sys.executable, script, "--check"], env=env).returncode == 0
    target = copy / "budgets.json"
    target.write_text(target.read_text().replace('"refresh": "30s"', '"refresh": "5s"'))
    r = subprocess.run([sys.executable, script, "--check"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "budgets.json" in r.stderr
    assert subprocess.run([sys.executable, script], env=env, capture_output=True).returncode == 0
    with open(os.path.join(DASHBOARD_DIR, "budgets.json"), encoding="utf-8") as f:
        assert target.read_text() == f.read()


def test_the_six_dashboards_with_stable_uids_and_links():
    assert {d["uid"] for d in DASHBOARDS.values()} == UIDS
    for name, d in DASHBOARDS.items():
        assert "costmeter" in d["tags"], name
        assert any(link["type"] == "dashboards" and link["tags"] == ["costmeter"] for link in d["links"]), name
        assert d["schemaVersion"] >= 36, name
        names = [v["name"] for v in d["templating"]["list"]]
        assert names[0] == "datasource" and d["templating"]["list"][0]["query"] == "prometheus", name
        alerts = [a for a in d["annotations"]["list"] if "expr" in a]
        assert alerts and all(a["expr"].startswith("ALERTS{") and a["datasource"] == DATASOURCE for a in alerts), name


@pytest.mark.parametrize("uid,variables", [
    ("costmeter-overview", {"tenant", "provider", "model", "budget"}),
    ("costmeter-budgets", {"budget"}),
    ("costmeter-llm", {"tenant", "provider", "model"}),
])
def test_template_variables(uid, variables):
    d = next(d for d in DASHBOARDS.values() if d["uid"] == uid)
    assert variables <= {v["name"] for v in d["templating"]["list"]}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_are_unique_and_the_grid_does_not_overlap(name):
    ps = list(panels(DASHBOARDS[name]))
    ids = [p["id"] for p in ps]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells = {}
    for p in ps:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f'{name}: panel "{p["title"]}" off the grid'
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), p)
                assert other is p, f'{name}: "{p["title"]}" overlaps "{other["title"]}" at x={x} y={y}'


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_and_query_reads_the_datasource_variable(name):
    d = DASHBOARDS[name]
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == DATASOURCE, f'{name}: panel "{p["title"]}"'
        assert p["targets"], f'{name}: panel "{p["title"]}" has no query'
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, f'{name}: panel "{p["title"]}" query {t["refId"]}'
    for v in d["templating"]["list"][1:]:
        assert v["datasource"] == DATASOURCE, f'{name}: variable {v["name"]}'


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_house_rules_in_queries(name):
    """$__rate_interval in every rate; spend is an increase over a range, never a raw lifetime _sum;
    no old panel types (graph, singlestat) that Grafana would have to migrate."""
    for where, expr, panel, _ in queries(DASHBOARDS[name]):
        for m in re.finditer(r"\b(?:rate|irate|increase)\(([^\[]*)\[([^\]]*)\]", expr):
            assert m.group(2) in ("$__rate_interval", "$__range"), f"{name} {where}: window [{m.group(2)}]"
            if m.group(2) == "$__range":
                assert expr[m.start():].startswith("increase("), f"{name} {where}: use increase over $__range"
        for name_ in metric_names(expr) if panel is not None else ():
            if name_.endswith("_sum") or name_.endswith("_total"):
                assert re.search(rf"\b(rate|increase)\({re.escape(name_)}\b", expr), \
                    f"{name} {where}: counter {name_} used without rate() or increase()"
        if panel is not None:
            assert panel["type"] in ("stat", "timeseries", "table", "bargauge"), f"{name} {where}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_a_query_uses_is_defined(name):
    d = DASHBOARDS[name]
    defined = {v["name"] for v in d["templating"]["list"]} | {"__range", "__rate_interval", "__interval"}
    for where, expr, _, _ in queries(d):
        for var in re.findall(r"\$\{?(\w+)", expr):
            assert var in defined, f"{name} {where}: ${var} is not a variable of this dashboard"


def test_metric_name_extraction():
    assert metric_names('sum by (tenant) (rate(cost_request_cost_usd_sum{tenant=~"$tenant"}[$__rate_interval]))') \
        == {"cost_request_cost_usd_sum"}
    assert metric_names("histogram_quantile(0.5, sum by (le) (rate(a_bucket[5m]))) / on (x) group_left b:c:d") \
        == {"a_bucket", "b:c:d"}
    assert metric_names('count(up{job=~"costmeter.*"} == 0) or vector(0)') == {"up"}


@pytest.fixture(scope="module")
def exporter_series(tmp_path_factory):
    """Series names a real exporter emits once it has seen a priced call, a cache hit and an unpriced model."""
    d = tmp_path_factory.mktemp("dash-exporter")
    with ExporterProcess(str(d / "state"), f"--budgets.file={os.path.join(REPO, 'config', 'budgets.yaml')}") as p:
        events = [
            {"provider": "openai", "model": "gpt-4o-mini", "tenant": "trial-tier", "input_tokens": 100,
             "output_tokens": 20, "duration_seconds": 0.4, "cache_hit": False},
            {"provider": "openai", "model": "gpt-4o-mini", "tenant": "trial-tier", "cache_hit": True,
             "saved_cost_usd": 0.001},
            {"provider": "openai", "model": "no-such-model-xyz", "tenant": "trial-tier", "input_tokens": 5,
             "error": True},
        ]
        r = requests.post(p.url + "/v1/events", json=events, timeout=10)
        assert r.status_code == 200, r.text
        text = requests.get(p.url + "/metrics", timeout=10).text
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_in_every_query_exists(exporter_series):
    """Emitted by a real exporter, recorded by a rule in alert_rules/, made by Prometheus,
    or in the metric contract (the billing metrics, emitted only with a billing source)."""
    known = exporter_series | set(recording_rules()) | PROMETHEUS_SERIES | spec_series()
    assert "cost_request_cost_usd_bucket" in exporter_series and "cost_budget_limit_usd" in exporter_series
    unknown = [(name, where, m) for name, d in DASHBOARDS.items() for where, expr, _, _ in queries(d)
               for m in metric_names(expr) if m not in known]
    assert not unknown, f"queries name metrics nobody emits: {unknown}"


def test_every_spec_cost_metric_is_charted():
    """Directly, or through a recording rule (followed transitively) that a panel charts."""
    rules = recording_rules()
    used = set()
    todo = [m for d in DASHBOARDS.values() for _, expr, panel, _ in queries(d) if panel is not None
            for m in metric_names(expr)]
    while todo:
        m = todo.pop()
        if m not in used:
            used.add(m)
            if m in rules:
                todo.extend(metric_names(rules[m]))
    for name, kind in SPEC_METRICS.items():
        if not name.startswith("cost_"):
            continue
        forms = {name} | ({name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else set())
        assert forms & used, f"{name} (a contract metric) is on no dashboard panel"


# ---- the Grafana 11 dashboard schema ----------------------------------------------------------
# Field names from Grafana 11.2.1's schema (grafana/kind-registry: core/dashboard/dashboard.cue,
# composable/{stat,table,bargauge,timeseries}/panelcfg.cue, common/mudball.cue and table.cue).
# A field outside these is one Grafana would migrate or ignore; a required one missing is one it
# would fill in. grafanalib 0.7.1 emits several of both (docs/dashboards.md).
DASHBOARD_FIELDS = {"id", "uid", "title", "description", "revision", "gnetId", "tags", "timezone", "editable",
                    "graphTooltip", "time", "timepicker", "fiscalYearStartMonth", "liveNow", "weekStart", "refresh",
                    "schemaVersion", "version", "panels", "templating", "annotations", "links", "snapshot", "preload"}
PANEL_FIELDS = {"type", "id", "pluginVersion", "targets", "title", "description", "transparent", "datasource",
                "gridPos", "links", "repeat", "repeatDirection", "maxPerRow", "maxDataPoints", "transformations",
                "interval", "timeFrom", "timeShift", "hideTimeOverride", "libraryPanel", "cacheTimeout",
                "queryCachingTTL", "options", "fieldConfig"}
ROW_FIELDS = {"type", "collapsed", "title", "datasource", "gridPos", "id", "panels", "repeat"}
FIELD_CONFIG_FIELDS = {"displayName", "displayNameFromDS", "description", "path", "writeable", "filterable", "unit",
                       "decimals", "min", "max", "mappings", "thresholds", "color", "links", "noValue", "custom"}
SINGLE_STAT = {"reduceOptions", "orientation", "text"}
OPTIONS = {   # panel type -> (allowed, required)
    "stat": (SINGLE_STAT | {"graphMode", "colorMode", "justifyMode", "textMode", "wideLayout", "showPercentChange",
                            "percentChangeColorMode"}, {"reduceOptions", "orientation"}),
    "bargauge": (SINGLE_STAT | {"displayMode", "valueMode", "namePlacement", "showUnfilled", "sizing", "minVizWidth",
                                "minVizHeight", "maxVizHeight"}, {"reduceOptions", "orientation", "displayMode"}),
    "table": ({"frameIndex", "showHeader", "showTypeIcons", "sortBy", "footer", "cellHeight"}, {"showHeader"}),
    "timeseries": ({"timezone", "legend", "tooltip", "orientation"}, {"legend", "tooltip"}),
}
LEGEND = ({"displayMode", "placement", "showLegend", "asTable", "isVisible", "sortBy", "sortDesc", "width", "calcs"},
          {"displayMode", "placement", "showLegend", "calcs"})
GRAPH_CUSTOM = {"lineColor", "lineWidth", "lineInterpolation", "lineStyle", "spanNulls", "barAlignment",
                "barWidthFactor", "barMaxWidth", "fillColor", "fillOpacity", "fillBelowTo", "showPoints", "pointSize",
                "pointColor", "pointSymbol", "axisPlacement", "axisColorMode", "axisLabel", "axisWidth", "axisSoftMin",
                "axisSoftMax", "axisGridShow", "scaleDistribution", "axisCenteredZero", "axisBorderShow", "stacking",
                "hideFrom", "drawStyle", "gradientMode", "thresholdsStyle", "transform", "insertNulls"}
TABLE_CUSTOM = ({"width", "minWidth", "align", "displayMode", "cellOptions", "hidden", "inspect", "filterable",
                 "hideHeader"}, {"align", "cellOptions", "inspect"})
# The variable model, plus `definition`, which the Prometheus variable editor saves beside `query`.
VARIABLE_FIELDS = {"type", "name", "label", "hide", "skipUrlSync", "description", "query", "datasource", "current",
                   "multi", "options", "refresh", "sort", "includeAll", "allValue", "regex", "definition"}
# The annotation query, plus the Prometheus data source's own query fields.
ANNOTATION_FIELDS = {"name", "datasource", "enable", "hide", "iconColor", "filter", "target", "type", "builtIn",
                     "expr", "step", "titleFormat", "textFormat", "tagKeys", "useValueForTime"}
LINK_FIELDS = ({"title", "type", "icon", "tooltip", "url", "tags", "asDropdown", "targetBlank", "includeVars",
                "keepTime"}, {"title", "type", "icon", "tooltip", "tags", "asDropdown", "targetBlank", "includeVars",
                              "keepTime"})


def _fits(where: str, obj: dict, allowed: set, required: set = frozenset()):
    assert set(obj) <= allowed, f"{where}: fields Grafana 11 does not have: {sorted(set(obj) - allowed)}"
    assert required <= set(obj), f"{where}: required fields missing: {sorted(required - set(obj))}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_fields_are_those_of_the_grafana_11_schema(name):
    d = DASHBOARDS[name]
    _fits(name, d, DASHBOARD_FIELDS, {"schemaVersion"})
    for link in d["links"]:
        _fits(f"{name} link", link, *LINK_FIELDS)
    for v in d["templating"]["list"]:
        _fits(f'{name} variable {v["name"]}', v, VARIABLE_FIELDS, {"type", "name"})
    for a in d["annotations"]["list"]:
        _fits(f'{name} annotation {a["name"]}', a, ANNOTATION_FIELDS, {"name", "datasource", "enable", "iconColor"})
    for p in panels(d):
        where = f'{name} panel "{p["title"]}"'
        if p["type"] == "row":
            _fits(where, p, ROW_FIELDS, {"type", "id", "panels"})
            continue
        _fits(where, p, PANEL_FIELDS, {"type"})
        _fits(where + " options", p["options"], *OPTIONS[p["type"]])
        _fits(where + " fieldConfig", p["fieldConfig"], {"defaults", "overrides"}, {"defaults", "overrides"})
        defaults = p["fieldConfig"]["defaults"]
        _fits(where + " defaults", defaults, FIELD_CONFIG_FIELDS)
        if p["type"] == "timeseries":
            _fits(where + " legend", p["options"]["legend"], *LEGEND)
            _fits(where + " tooltip", p["options"]["tooltip"], {"mode", "sort", "maxWidth", "maxHeight"},
                  {"mode", "sort"})
            _fits(where + " custom", defaults["custom"], GRAPH_CUSTOM)
        if p["type"] == "table":
            _fits(where + " custom", defaults["custom"], *TABLE_CUSTOM)
            assert "displayMode" not in defaults["custom"], where + ": deprecated in favour of cellOptions"
        for o in p["fieldConfig"]["overrides"]:
            _fits(where + " override", o, {"matcher", "properties"}, {"matcher", "properties"})
        for t in p["transformations"]:
            _fits(where + " transformation", t, {"id", "disabled", "filter", "topic", "options"}, {"id", "options"})
