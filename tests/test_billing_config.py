"""The billing section of exporter.yaml and billing_source budgets: file, line and key in every
error; a key written in the file is refused with a hint and never repeated."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from costmeter.budgets.config import loads_budgets
from costmeter.config.billing import parse_duration
from costmeter.config.loader import ConfigError, ConfigErrors
from costmeter.config.settings import load_settings

SECRET = "sk-admin-AbCdEf0123456789abcdefXYZ"


def write(tmp_path, text: str) -> str:
    p = tmp_path / "exporter.yaml"
    p.write_text(text)
    return str(p)


def errors_of(tmp_path, text: str) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as e:
        load_settings(write(tmp_path, text))
    errs = e.value.errors if isinstance(e.value, ConfigErrors) else [e.value]
    return [x.render() for x in errs]


def test_a_full_billing_section(tmp_path):
    (tmp_path / "anthropic.key").write_text("not read at load time\n")
    s = load_settings(write(tmp_path, """
billing:
  interval: 2h
  sources:
    - {name: openai, type: openai, api_key_env: OPENAI_ADMIN_KEY}
    - {name: anthropic, type: anthropic, api_key_file: anthropic.key, interval: 30m}
    - {name: aws, type: aws, region: us-east-1, metric: AmortizedCost}
    - {name: exports, type: focus, paths: ["focus/**/*.csv.gz"]}
"""))
    b = s.billing
    assert [(x.name, x.type, x.interval) for x in b.sources] == [
        ("openai", "openai", 7200.0), ("anthropic", "anthropic", 1800.0), ("aws", "aws", 7200.0),
        ("exports", "focus", 7200.0)]
    assert b.get("openai").base_url == "https://api.openai.com"
    assert b.get("anthropic").api_key_file == str(tmp_path / "anthropic.key")
    assert b.get("aws").metric == "AmortizedCost" and b.get("aws").endpoint_url is None
    assert b.get("exports").paths == (str(tmp_path / "focus/**/*.csv.gz"),)
    assert load_settings(None).billing.sources == []


@pytest.mark.parametrize("entry", [
    f"{{name: openai, type: openai, api_key_env: {SECRET}}}",
    f"{{name: openai, type: openai, api_key_env: \"{SECRET}\"}}",
    "{name: openai, type: openai, api_key_env: Abcdefghij0123456789klmno}",
    f"{{name: openai, type: openai, api_key: {SECRET}}}",
])
def test_a_key_in_the_file_is_refused_with_a_hint_and_not_repeated(tmp_path, entry):
    errs = errors_of(tmp_path, f"billing:\n  sources:\n    - {entry}\n")
    assert len(errs) == 1
    assert errs[0].startswith(f"{tmp_path / 'exporter.yaml'}:3: billing.sources[0].api_key")
    assert "environment variable" in errs[0] and "api_key_file" in errs[0]
    assert SECRET not in errs[0] and "Abcdefghij" not in errs[0]


@pytest.mark.parametrize("text,where,message", [
    ("billing:\n  interval: 0.5s\n", ":2: billing.interval", "at least 1s"),
    ("billing:\n  interval: hourly\n", ":2: billing.interval", "duration such as 1h"),
    ("billing:\n  sources:\n    - {name: x, type: gcp}\n", ":3: billing.sources[0].type", "unknown type 'gcp'"),
    ("billing:\n  sources:\n    - {type: openai}\n", ":3: billing.sources[0]", "missing key 'name'"),
    ("billing:\n  sources:\n    - {name: x, type: openai}\n", ":3: billing.sources[0]", "exactly one of api_key_env"),
    ("billing:\n  sources:\n    - name: x\n      type: openai\n      api_key_env: 1BAD\n",
     ":5: billing.sources[0].api_key_env", "not an environment variable name"),
    ("billing:\n  sources:\n    - {name: x, type: aws, metric: Cost}\n", ":3: billing.sources[0].metric",
     "unknown Cost Explorer metric"),
    ("billing:\n  sources:\n    - {name: x, type: aws, api_key_env: K}\n", ":3: billing.sources[0].api_key_env",
     "unknown key"),
    ("billing:\n  sources:\n    - {name: x, type: focus}\n", ":3: billing.sources[0]", "list of file globs"),
    ("billing:\n  sources:\n    - {name: x, type: openai, api_key_env: K, base_url: api.openai.com}\n",
     ":3: billing.sources[0].base_url", "http:// or https://"),
    ("billing:\n  sources:\n    - {name: x, type: anthropic, api_key_file: nope.key}\n",
     ":3: billing.sources[0].api_key_file", "no such file"),
    ("billing:\n  sources:\n    - {name: a, type: aws}\n    - {name: a, type: aws}\n",
     ":4: billing.sources[1].name", "duplicate source name 'a' (first at line 3)"),
    ("billing:\n  sorces: []\n", ":2: billing.sorces", "unknown key"),
])
def test_errors_name_file_line_and_key(tmp_path, text, where, message):
    errs = errors_of(tmp_path, text)
    assert any(e.startswith(str(tmp_path / "exporter.yaml") + where) and message in e for e in errs), errs


def test_durations():
    assert [parse_duration(x) for x in ("1h", "90s", "1h30m", "1d", "1500ms")] == [3600, 90, 5400, 86400, 1.5]
    for bad in ("1", "h", "1 h", "-1h", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_key_is_read_at_pull_time_from_the_variable_or_the_file(tmp_path, monkeypatch):
    (tmp_path / "k").write_text("sk-ant-admin-filekey\n")
    s = load_settings(write(tmp_path, "billing:\n  sources:\n"
                                      "    - {name: a, type: anthropic, api_key_file: k}\n"
                                      "    - {name: o, type: openai, api_key_env: TEST_BILLING_KEY}\n"))
    assert s.billing.get("a").api_key() == "sk-ant-admin-filekey"
    monkeypatch.setenv("TEST_BILLING_KEY", "sk-admin-envkey")
    assert s.billing.get("o").api_key() == "sk-admin-envkey"
    (tmp_path / "k").write_text("sk-ant-admin-rotated")
    assert s.billing.get("a").api_key() == "sk-ant-admin-rotated"


# ---- budgets with billing_source ---------------------------------------------------------------

def test_billing_source_budget():
    cfg = loads_budgets("budgets:\n"
                        "  - {name: aws, billing_source: aws, period: monthly, limit_usd: 5000}\n"
                        "  - name: rds\n    billing_source: aws\n    service: Amazon Relational Database Service\n"
                        "    period: monthly\n    limit_usd: 800\n", env={})
    aws, rds = cfg.budgets
    assert (aws.billing_source, aws.billing_service, aws.period, aws.timezone) == ("aws", None, "monthly", "UTC")
    assert rds.billing_service == "Amazon Relational Database Service"
    assert cfg.billing_refs == [("aws", "aws", 2), ("rds", "aws", 4)]
    assert not aws.matches(("aws", "m", "t", "e"))      # events never count toward a bill


@pytest.mark.parametrize("entry,where,message", [
    ("{name: b, billing_source: aws, period: daily, limit_usd: 5}", "budgets[0].period", "period: monthly"),
    ("{name: b, billing_source: aws, period: monthly, limit_usd: 5, selector: {tenant: a}}",
     "budgets[0].selector", "remove selector"),
    ("{name: b, billing_source: aws, period: monthly, limit_usd: 5, timezone: Europe/Berlin}",
     "budgets[0].timezone", "billing months are UTC"),
    ("{name: b, service: EC2, period: monthly, limit_usd: 5}", "budgets[0].service", "only applies with"),
    ("{name: b, billing_source: aws, limits: {monthly: 5}}", "budgets[0].limits", "one monthly limit"),
])
def test_billing_source_budget_errors(entry, where, message):
    with pytest.raises(ConfigError) as e:
        loads_budgets(f"budgets:\n  - {entry}\n", env={})
    assert e.value.render().startswith(f"budgets.yaml:2: {where}: ") and message in e.value.render()


def test_check_refuses_a_budget_naming_an_unknown_source_and_a_key_in_the_file(tmp_path):
    (tmp_path / "budgets.yaml").write_text("budgets:\n  - {name: cloud, billing_source: awz, period: monthly, "
                                           "limit_usd: 100}\n")
    write(tmp_path, "budgets_file: budgets.yaml\nbilling:\n  sources:\n    - {name: aws, type: aws}\n")
    res = subprocess.run([sys.executable, "-m", "costmeter.cli", "check", "--config.file",
                          str(tmp_path / "exporter.yaml")], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert res.returncode == 1
    assert f"{tmp_path / 'budgets.yaml'}:2: budget 'cloud': billing_source: no billing source named 'awz'" \
        in res.stderr + res.stdout
    assert "sources: aws" in res.stderr + res.stdout
    write(tmp_path, f"billing:\n  sources:\n    - {{name: o, type: openai, api_key_env: {SECRET}}}\n")
    res = subprocess.run([sys.executable, "-m", "costmeter.cli", "check", "--config.file",
                          str(tmp_path / "exporter.yaml")], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env=dict(os.environ))
    assert res.returncode == 1
    assert "exporter.yaml:3: billing.sources[0].api_key_env: this looks like a key" in res.stderr + res.stdout
    assert SECRET not in res.stderr + res.stdout
