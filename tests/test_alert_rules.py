"""Lint and unit-test the Prometheus rules and the Alertmanager config.

promtool and amtool are the real Debian binaries (tests/run.sh installs them).
The promtool unit tests live in alert_rules/tests/; the mutation test below
checks that they notice when a threshold, a for: or an aggregation changes.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(REPO, "alert_rules")
RULE_FILES = [os.path.join(RULES, "costmeter.rules.yml"), os.path.join(RULES, "costmeter.alerts.yml")]
PROMTOOL_TESTS = sorted(glob.glob(os.path.join(RULES, "tests", "*.yml")))
AM_CONFIG = os.path.join(REPO, "config", "alertmanager.yml")
RUNBOOK = os.path.join(REPO, "docs", "runbook.md")

# The alert table of the specification: name -> severity.
SPEC_ALERTS = {
    "CostBudgetWarning": "warning",
    "CostBudgetCritical": "critical",
    "CostBudgetExceeded": "critical",
    "CostBudgetForecastExceeded": "warning",
    "CostSpendAnomaly": "warning",
    "CostUnpricedModel": "warning",
    "CostBillingPullFailing": "warning",
    "CostEstimateDrift": "info",
    "CostExporterDown": "critical",
}
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
BUDGET_ANNOTATIONS = {"spend", "limit", "utilization", "forecast"}


def run(*cmd: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def load(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def alerts() -> dict[str, dict]:
    out = {}
    for group in load(RULE_FILES[1])["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule, f"recording rule {rule.get('record')} belongs in costmeter.rules.yml"
            out[rule["alert"]] = rule
    return out


def records() -> set[str]:
    return {r["record"] for g in load(RULE_FILES[0])["groups"] for r in g["rules"]}


# ---- the tools --------------------------------------------------------------------------

def test_promtool_check_rules():
    r = run("promtool", "check", "rules", *RULE_FILES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == 2, r.stdout


def test_there_are_promtool_tests():
    names = {os.path.basename(p) for p in PROMTOOL_TESTS}
    assert {"budget_alerts_test.yml", "anomaly_alerts_test.yml", "pipeline_alerts_test.yml",
            "drift_alerts_test.yml"} <= names


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=os.path.basename)
def test_promtool_test_rules(path):
    r = run("promtool", "test", "rules", path, cwd=os.path.dirname(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_check_config():
    r = run("promtool", "check", "config", os.path.join(REPO, "config", "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout


def test_prometheus_config_loads_the_rules_and_scrapes_the_exporter():
    cfg = load(os.path.join(REPO, "config", "prometheus.yml"))
    loaded = {os.path.normpath(os.path.join(REPO, "config", p)) for p in cfg["rule_files"]}
    assert loaded == {os.path.normpath(p) for p in RULE_FILES}
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    assert any(re.fullmatch("costmeter.*", j) for j in jobs)
    assert cfg["alerting"]["alertmanagers"]


def test_amtool_check_config():
    r = run("amtool", "check-config", AM_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 inhibit rules" in r.stdout and "1 templates" in r.stdout


# ---- what the rules promise ------------------------------------------------------------

def test_every_spec_alert_exists_with_severity_and_annotations():
    defined = alerts()
    assert set(defined) == set(SPEC_ALERTS)
    for name, rule in defined.items():
        assert rule["labels"]["severity"] == SPEC_ALERTS[name], name
        want = ANNOTATIONS | (BUDGET_ANNOTATIONS if name.startswith("CostBudget") else set())
        assert set(rule["annotations"]) == want, name
        assert rule["annotations"]["runbook_url"].endswith("docs/runbook.md#" + name.lower()), name
        assert rule["annotations"]["dashboard_url"].startswith("http"), name


def test_every_runbook_url_has_an_anchor_in_docs_runbook():
    with open(RUNBOOK) as f:
        headings = {m.group(1).strip().lower() for m in re.finditer(r"^##\s+(\S+)\s*$", f.read(), re.M)}
    for name, rule in alerts().items():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in headings, f"docs/runbook.md has no '## {name}' section"


def test_every_for_has_a_comment_saying_why():
    with open(RULE_FILES[1]) as f:
        lines = f.read().splitlines()
    fors = [i for i, line in enumerate(lines) if re.match(r"\s+for:\s", line)]
    assert len(fors) == len(SPEC_ALERTS)
    for i in fors:
        assert "#" in lines[i] or lines[i - 1].strip().startswith("#"), f"line {i + 1}: for: without a comment"


def test_budget_alerts_compare_against_the_threshold_metric_per_level():
    for name, level in (("CostBudgetWarning", "warning"), ("CostBudgetCritical", "critical"),
                        ("CostBudgetExceeded", "exceeded")):
        expr = alerts()[name]["expr"]
        assert f'budget_period_level:cost_budget_threshold_ratio:max{{level="{level}"}}' in expr
        assert "budget_period:cost_budget_utilization_ratio:sum" in expr


def test_recording_rule_names_are_level_metric_operations():
    for name in records():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_alerts_only_read_recording_rules_that_exist():
    text = "\n".join([r["expr"] for r in alerts().values()]
                     + [v for r in alerts().values() for v in r["annotations"].values()])
    used = set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", text))
    assert used and used <= records(), used - records()


def test_every_alert_is_tested_firing_and_not_firing():
    fired, quiet = set(), set()
    for path in PROMTOOL_TESTS:
        for case in load(path)["tests"]:
            for t in case.get("alert_rule_test", []):
                (fired if t.get("exp_alerts") else quiet).add(t["alertname"])
                for exp in t.get("exp_alerts") or []:
                    # The full annotation set is asserted, not a subset.
                    want = ANNOTATIONS | (BUDGET_ANNOTATIONS if t["alertname"].startswith("CostBudget") else set())
                    assert set(exp["exp_annotations"]) == want, (path, t["alertname"])
                    assert "severity" in exp["exp_labels"]
    assert fired >= set(SPEC_ALERTS), set(SPEC_ALERTS) - fired
    assert quiet >= set(SPEC_ALERTS), set(SPEC_ALERTS) - quiet


# ---- the tests catch regressions --------------------------------------------------------

MUTATIONS = [
    # (what changes, old, new, test file and test group that must fail)
    ("warning for: one minute shorter", "for: 10m", "for: 9m",
     "budget_alerts_test.yml", "budget levels across two exporters"),
    ("thresholds compared with > instead of >=", ">= on (budget, period)", "> on (budget, period)",
     "budget_alerts_test.yml", "budget levels across two exporters"),
    ("spend not summed across exporters", "sum by (budget, period) (cost_budget_spend_usd)",
     "max by (budget, period) (cost_budget_spend_usd)", "budget_alerts_test.yml", "budget levels across two exporters"),
    ("limit summed across exporters", "max by (budget, period) (cost_budget_limit_usd)",
     "sum by (budget, period) (cost_budget_limit_usd)", "budget_alerts_test.yml", "budget levels across two exporters"),
    ("no default thresholds", 'or label_replace(0 * budget_period:cost_budget_limit_usd:max + 0.80, "level", "warning", "", "")',
     "", "budget_alerts_test.yml", "default thresholds"),
    ("forecast gate opened earlier", "budget_period:cost_budget_period_elapsed:ratio >= 0.25",
     "budget_period:cost_budget_period_elapsed:ratio >= 0.1", "budget_alerts_test.yml", "forecast"),
    ("no absolute floor on anomalies", ") * 3600 > 1", ") * 3600 > 0", "anomaly_alerts_test.yml", "anomaly"),
    ("exporter down without absent()", 'or\n          absent(up{job=~"costmeter.*"})', "",
     "pipeline_alerts_test.yml", "no exporter target at all"),
]


def test_promtool_tests_fail_when_the_rules_change(tmp_path):
    """Each mutation of the rules must make its promtool test group fail (run in parallel)."""
    procs = []
    for i, (what, old, new, test_file, group) in enumerate(MUTATIONS):
        d = tmp_path / str(i)
        shutil.copytree(RULES, d)
        changed = False
        for name in ("costmeter.rules.yml", "costmeter.alerts.yml"):
            text = (d / name).read_text()
            if old in text:
                (d / name).write_text(text.replace(old, new, 1))
                changed = True
        assert changed, f"mutation {what!r}: {old!r} is not in the rules any more"
        check = run("promtool", "check", "rules", str(d / "costmeter.rules.yml"), str(d / "costmeter.alerts.yml"))
        assert check.returncode == 0, (what, check.stdout + check.stderr)
        # Only the test group that covers the mutation, to keep this fast.
        tests = load(str(d / "tests" / test_file))
        tests["tests"] = [t for t in tests["tests"] if t["name"] == group]
        assert len(tests["tests"]) == 1, (test_file, group)
        with open(d / "tests" / "mutated_test.yml", "w") as f:
            yaml.safe_dump(tests, f)
        # test_promtool_test_rules shows the unmutated rules pass it: a failure is the mutation's doing.
        procs.append((what, subprocess.Popen(["promtool", "test", "rules", "mutated_test.yml"], cwd=d / "tests",
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    survived = []
    for what, p in procs:
        out, _ = p.communicate(timeout=180)
        if p.returncode == 0:
            survived.append(what)
        else:
            assert "FAILED" in out, (what, out)
    assert survived == [], f"promtool tests still pass after: {survived}"


# ---- Alertmanager -----------------------------------------------------------------------

def test_alertmanager_routes_by_severity_and_groups_by_budget():
    cfg = load(AM_CONFIG)
    route = cfg["route"]
    assert {"budget", "period", "alertname"} <= set(route["group_by"])
    by_severity = {m: r["receiver"] for r in route["routes"] for m in r["matchers"]}
    assert by_severity == {'severity="critical"': "slack-critical", 'severity="warning"': "slack-warning",
                           'severity="info"': "slack-warning"}
    receivers = {r["name"]: r for r in cfg["receivers"]}
    for name in ("slack-critical", "slack-warning"):
        (slack,) = receivers[name]["slack_configs"]
        assert slack["send_resolved"] is True
        assert "costmeter.slack.text" in slack["text"] and "costmeter.slack.title" in slack["title"]


def test_higher_budget_levels_inhibit_lower_ones_for_the_same_budget_and_period():
    pairs = set()
    for rule in load(AM_CONFIG)["inhibit_rules"]:
        assert set(rule["equal"]) == {"budget", "period"}
        (src,) = rule["source_matchers"]
        (dst,) = rule["target_matchers"]
        source = re.fullmatch(r'alertname="(\w+)"', src).group(1)
        targets = re.fullmatch(r'alertname=~?"([\w|]+)"', dst).group(1).split("|")
        pairs |= {(source, t) for t in targets}
    assert pairs == {("CostBudgetExceeded", "CostBudgetCritical"), ("CostBudgetExceeded", "CostBudgetWarning"),
                     ("CostBudgetExceeded", "CostBudgetForecastExceeded"), ("CostBudgetCritical", "CostBudgetWarning")}


def test_no_slack_webhook_is_committed():
    cfg = load(AM_CONFIG)
    assert cfg["global"]["slack_api_url_file"].startswith("/")
    assert "slack_api_url" not in cfg["global"]
    for receiver in cfg["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack
    for path in [AM_CONFIG, *glob.glob(os.path.join(REPO, "config", "*.tmpl"))]:
        with open(path) as f:
            assert "hooks.slack.com" not in f.read(), path
