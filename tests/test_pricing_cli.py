"""`costmeter pricing show` and `costmeter pricing import-litellm` (on a LiteLLM-format fixture)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from freezegun import freeze_time

from costmeter.cli.main import main
from costmeter.pricing import PricingTable
from costmeter.pricing.litellm import convert
from exporter_support import costmeter_cmd

FIXTURE = Path(__file__).resolve().parent / "data" / "litellm_model_prices.json"
M = 1e6


# ---- pricing show -----------------------------------------------------------------------------

@freeze_time("2026-11-30 12:00:00")
def test_show_json_gateway_name_tiers_and_batch(capsys):
    assert main(["pricing", "show", "gemini/gemini-2.5-pro", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["priced"] is True and d["at"] == "2026-11-30T12:00:00Z" and d["unit"] == "USD per million tokens"
    (m,) = d["matches"]
    assert (m["provider"], m["model"]) == ("google", "gemini-2.5-pro")
    assert m["resolution"] == ["gateway prefix gemini/", "provider gemini is priced as google", "name gemini-2.5-pro"]
    assert m["source"].startswith("https://ai.google.dev/")
    assert m["rates"] == {"input": 1.25, "cached_input": 0.125, "cache_write": 1.25, "cache_write_1h": 1.25,
                          "output": 10.0, "reasoning": 10.0}
    assert m["long_context"]["above"] == 200_000 and m["long_context"]["rates"]["output"] == 15.0
    assert "cache_write_1h" in m["long_context"]["decided_by"]
    b = m["batch"]
    assert b["discount"] == 0.5 and b["undiscounted"] == ["cached_input"]
    assert (b["rates"]["input"], b["rates"]["cached_input"], b["rates"]["output"]) == (0.625, 0.125, 5.0)
    assert (b["long_context_rates"]["input"], b["long_context_rates"]["cached_input"]) == (1.25, 0.25)


@freeze_time("2026-11-30 12:00:00")
def test_show_text_bedrock_id_with_1h_writes(capsys):
    assert main(["pricing", "show", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "--provider", "bedrock"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0 -> anthropic/claude-sonnet-4-5\n")
    assert "provider bedrock is priced as anthropic" in out
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.startswith("  standard")}
    assert lines["standard"] == ["3", "0.3", "3.75", "6", "15", "15"]
    assert "prompt > 200,000" in out and "batch: 50% off" in out


@freeze_time("2025-09-10 00:00:00")
def test_show_prices_in_force_today_with_history(capsys):
    assert main(["pricing", "show", "deepseek-chat", "--json"]) == 0
    (m,) = json.loads(capsys.readouterr().out)["matches"]
    assert m["effective_from"] == "2025-09-05" and m["rates"]["input"] == 0.56
    assert [h["effective_from"] for h in m["history"]] == [None, "2025-09-05", "2025-09-29"]


def test_show_unpriced_exits_1_and_says_why(capsys):
    assert main(["pricing", "show", "gemini-flash-latest"]) == 1
    out = capsys.readouterr().out
    assert "no price under any provider" in out and "costmeter_unpriced_calls_total" in out
    assert main(["pricing", "show", "gpt-4o", "--provider", "anthropic", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d == {**d, "priced": False, "matches": [], "provider": "anthropic"}


def test_show_with_a_bad_pricing_file_names_the_line(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("providers:\n  openai:\n    models:\n      x: {input: 1, outptu: 2}\n")
    assert main(["pricing", "show", "x", "--pricing.file", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:4" in err and "outptu" in err


# ---- import-litellm ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conversion():
    return convert(json.loads(FIXTURE.read_text()), "model_prices_and_context_window.json", "2026-11-30")


def test_import_maps_rates_tiers_1h_writes_and_batch(conversion):
    t = PricingTable.loads(conversion.yaml, "imported.yaml")
    # claude-sonnet-4-5-20250929: 5m and 1h writes, and the >200k tier with its own 1h rate.
    assert t.cost("anthropic", "claude-sonnet-4-5-20250929", 1000, 10000, 2000, 500,
                  cache_write_1h_tokens=3000) == pytest.approx((1000 * 3 + 10000 * 0.3 + 2000 * 3.75 + 3000 * 6
                                                                + 500 * 15) / M)
    assert t.cost("anthropic", "claude-sonnet-4-5-20250929", 190_001, 0, 5000, 100, cache_write_1h_tokens=5000) == \
        pytest.approx((190_001 * 6 + 5000 * 7.5 + 5000 * 12 + 100 * 22.5) / M)
    # gpt-5.4: the 272k tier; batch prices that are one 50 % discount.
    assert t.cost("openai", "gpt-5.4", 272_001, output_tokens=1000) == pytest.approx((272_001 * 5 + 1000 * 22.5) / M)
    assert t.cost("openai", "gpt-4o", 1000, 1000, 0, 1000, batch=True) == \
        pytest.approx((1000 * 2.5 + 1000 * 1.25 + 1000 * 10) * 0.5 / M)
    # gemini/ prefix -> google; the built-in rule that batch leaves cached input alone still holds.
    assert t.cost("google", "gemini-2.5-pro", 1000, 1000, 0, 1000, batch=True) == \
        pytest.approx((1000 * 1.25 + 1000 * 10) * 0.5 / M + 1000 * 0.125 / M)
    assert t.cost("openai", "o4-mini", 0, 0, 0, 0, 1000) == pytest.approx(1000 * 4.4 / M)
    assert t.cost("openai", "text-embedding-3-small", 1_000_000) == pytest.approx(0.02)
    # Providers under costmeter's names; the rest of the name kept as the vendor spells it.
    assert t.cost("vertex_ai", "gemini-2.5-pro", 1000, output_tokens=1000) == pytest.approx((1250 + 10000) / M)
    assert t.cost("together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 1000, output_tokens=1000) == \
        pytest.approx(1760 / M)
    assert t.cost("bedrock", "us.anthropic.claude-3-haiku-20240307-v1:0", 1000, output_tokens=1000) == \
        pytest.approx((250 + 1250) / M)
    # Merged over the built-in table: what the import does not have is still priced.
    assert t.cost("anthropic", "claude-haiku-4-5", 1000) == pytest.approx(1000 * 1.0 / M)
    # An imported model name beats a built-in alias of the same name.
    assert t.resolve("mistral", "mistral-large-latest") == "mistral-large-latest"
    assert conversion.imported == 13


def test_import_lists_what_it_cannot_map(conversion):
    skipped = dict(conversion.skipped)
    assert set(skipped) == {"gemini/gemini-1.5-pro-tiered", "azure/eu/gpt-4o-2024-08-06",
                            "bedrock/us-east-1/anthropic.claude-3-haiku-20240307-v1:0", "deepseek/deepseek-chat",
                            "deepseek-chat", "gpt-4o-mini-odd-batch", "dall-e-3", "whisper-1", "chat-bison"}
    assert "several long-context thresholds" in skipped["gemini/gemini-1.5-pro-tiered"]
    assert "region" in skipped["azure/eu/gpt-4o-2024-08-06"]
    assert "different prices" in skipped["deepseek-chat"]
    assert "not one discount" in skipped["gpt-4o-mini-odd-batch"]
    assert "image_generation" in skipped["dall-e-3"]
    assert "no per-token price" in skipped["chat-bison"]
    notes = dict(conversion.notes)
    assert "input_cost_per_audio_token" in notes["gemini/gemini-2.5-flash"]
    assert "input_cost_per_token_flex" in notes["gpt-5.4"]
    t = PricingTable.loads(conversion.yaml)
    # Nothing of a skipped entry leaks in: deepseek-chat keeps the built-in price.
    assert t.price("deepseek", "deepseek-chat", 1.8e9).source.startswith("https://api-docs.deepseek.com")
    assert t.resolve("google", "gemini-1.5-pro-tiered") is None


def test_import_rejects_what_is_not_a_litellm_file():
    with pytest.raises(ValueError, match="expected a JSON object"):
        convert([1, 2], "x.json", "2026-11-30")
    c = convert({}, "x.json", "2026-11-30")
    assert c.imported == 0 and PricingTable.loads(c.yaml).resolve("openai", "gpt-4o") == "gpt-4o"


def test_import_cli_stdout_is_pricing_yaml_and_stderr_lists_skips(tmp_path):
    res = subprocess.run(costmeter_cmd() + ["pricing", "import-litellm", str(FIXTURE)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "imported.yaml"
    out.write_text(res.stdout)
    assert "not imported: dall-e-3: mode 'image_generation' is not priced per token" in res.stderr
    assert "13 models imported, 9 entries left out" in res.stderr
    assert "providers:" in res.stdout and "not imported" not in res.stdout
    # The output is what --pricing.file takes.
    show = subprocess.run(costmeter_cmd() + ["pricing", "show", "gemini-2.5-pro", "--provider", "vertex_ai",
                                             "--pricing.file", str(out), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    (m,) = json.loads(show.stdout)["matches"]
    assert m["provider"] == "vertex_ai" and m["source"].startswith("LiteLLM litellm_model_prices.json")
    check = subprocess.run(costmeter_cmd() + ["check", "--pricing.file", str(out)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr


def test_import_cli_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  \"gpt-4o\": {,}\n}\n")
    res = subprocess.run(costmeter_cmd() + ["pricing", "import-litellm", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and f"{bad}:2: invalid JSON" in res.stderr and not res.stdout
    res = subprocess.run(costmeter_cmd() + ["pricing", "import-litellm", str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "cannot read" in res.stderr


def test_pricing_is_a_command_and_alone_prints_its_help(capsys):
    assert main([]) == 0
    assert "pricing" in capsys.readouterr().out
    assert main(["pricing"]) == 0
    out = capsys.readouterr().out
    assert "show" in out and "import-litellm" in out
