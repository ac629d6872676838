"""`costmeter pricing show` and `costmeter pricing import-litellm` (on a LiteLLM-format fixture, and on
entries cut verbatim from LiteLLM's real file), and tools/compare_litellm.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from freezegun import freeze_time

from costmeter.cli.main import main
from costmeter.pricing import PricingTable
from costmeter.pricing.litellm import convert
from exporter_support import costmeter_cmd

FIXTURE = Path(__file__).resolve().parent / "data" / "litellm_model_prices.json"
# 25 entries and the two metadata keys cut verbatim from LiteLLM's model_prices_and_context_window.json as
# mirrored on 2026-07-24 (RoCry/llm-api-price 8442b93; fallback_generalizations shortened to its first rule).
REAL = Path(__file__).resolve().parent / "data" / "litellm_2026-07-24_excerpt.json"
ROOT = Path(__file__).resolve().parent.parent
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
    assert lines["standard"] == ["3.3", "0.33", "4.125", "6.6", "16.5", "16.5"]     # us.: 10 % over
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


def test_import_leaves_out_entries_whose_prices_are_not_prices_and_writes_numbers_yaml_reads():
    ok = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    data = {
        "m-inf": dict(ok, output_cost_per_token=1e308),                 # inf once per million
        "m-neg-cache": dict(ok, cache_read_input_token_cost=-1e-07),    # not priced at the input rate instead
        "m-list-tier": dict(ok, input_cost_per_token_above_200k_tokens=[1]),
        "m-bool-batch": dict(ok, input_cost_per_token_batches=True),
        "m-null-cache": dict(ok, cache_read_input_token_cost=None),     # null: as if absent
        "m-huge": dict(ok, input_cost_per_token=1e30, output_cost_per_token=1e-11),
    }
    c = convert(data, "x.json", "2026-11-30")
    skipped = dict(c.skipped)
    assert set(skipped) == {"m-inf", "m-neg-cache", "m-list-tier", "m-bool-batch"}
    assert "not a price" in skipped["m-neg-cache"] and "cache_read_input_token_cost" in skipped["m-neg-cache"]
    t = PricingTable.loads(c.yaml)                   # what it writes loads back as numbers, exactly
    assert t.price("openai", "m-huge").input == 1e36 and t.price("openai", "m-huge").output == 1e-05
    assert t.price("openai", "m-null-cache").cached_input == 1.0
    assert t.resolve("openai", "m-inf") is None and t.resolve("openai", "m-neg-cache") is None


# ---- import-litellm on the real file's shapes ---------------------------------------------------

@pytest.fixture(scope="module")
def real():
    return convert(json.loads(REAL.read_text()), "model_prices_and_context_window.json", "2026-11-30")


def test_import_real_shapes_skips_and_notes(real):
    skipped = dict(real.skipped)
    assert set(skipped) == {"gpt-realtime", "gemini-flash-latest", "gemini/gemini-flash-latest",
                            "azure/eu/gpt-5.6-sol", "last_updated"}
    assert "not priced per token" in skipped["gpt-realtime"]
    # Google's moving alias: two entries with different cache-read prices, so neither is guessed.
    assert "different prices" in skipped["gemini-flash-latest"]
    assert "region-, deployment- or publisher-specific" in skipped["azure/eu/gpt-5.6-sol"]
    assert skipped["last_updated"] == "not a model entry (a JSON string, not an object)"
    notes = dict(real.notes)
    assert "gemini-flash-latest" not in notes                       # left out: no note about it either
    assert "input_cost_per_token_priority" in notes["gpt-5.6-sol"]
    assert "output_cost_per_token_above_200k_tokens_priority" in notes["gemini/gemini-3.1-pro-preview"]
    # gemini-3-flash-preview and vertex_ai/gemini-3-flash-preview differ only in spelling out a reasoning
    # rate equal to the output rate: one vertex_ai model, not a clash.
    assert real.imported == 20
    t = PricingTable.loads(real.yaml, "imported.yaml")
    assert t.explain("vertex_ai", "gemini-3-flash-preview")["provider"] == "vertex_ai"


def test_import_real_shapes_hand_computed_costs(real):
    t = PricingTable.loads(real.yaml, "imported.yaml")
    snap = 1784917423.0          # 2026-07-24T18:23:43Z, the snapshot
    # OpenAI gpt-5.6-sol over 272k: input, cache reads and cache writes double, output 1.5x; batch 50 %.
    assert t.cost("openai", "gpt-5.6-sol", 200_001, 64_000, 8000, 1000, at=snap) == \
        pytest.approx((200_001 * 10 + 64_000 * 1 + 8000 * 12.5 + 1000 * 45) / M)
    assert t.cost("openai", "gpt-5.4-pro-2026-03-05", 1000, 1000, 0, 1000, batch=True, at=snap) == \
        pytest.approx((1000 * 30 + 1000 * 3 + 1000 * 180) * 0.5 / M)
    # The imported entry replaces the built-in one: gpt-5.6-terra at the snapshot's launch price, after
    # OpenAI's cut of 2026-07-30 too (the built-in table has the cut).
    assert t.cost("openai", "gpt-5.6-terra", 1000, output_tokens=1000) == pytest.approx((1000 * 2.5 + 1000 * 15) / M)
    assert PricingTable.load().cost("openai", "gpt-5.6-terra", 1000, output_tokens=1000) == \
        pytest.approx((1000 * 2 + 1000 * 12) / M)
    # Anthropic: 1h writes, and claude-sonnet-4-5's >200k tier with its own 1h rate.
    assert t.cost("anthropic", "claude-fable-5", 1000, 10_000, 2000, 500, cache_write_1h_tokens=3000) == \
        pytest.approx((1000 * 10 + 10_000 * 1 + 2000 * 12.5 + 3000 * 20 + 500 * 50) / M)
    assert t.cost("anthropic", "claude-sonnet-4-5", 190_001, 0, 5000, 100, cache_write_1h_tokens=5000) == \
        pytest.approx((190_001 * 6 + 5000 * 7.5 + 5000 * 12 + 100 * 22.5) / M)
    # Bedrock's us. cross-region profile is 10 % above Anthropic's price; global. is not.
    assert t.cost("bedrock", "us.anthropic.claude-opus-5", 1000, output_tokens=1000) == \
        pytest.approx((1000 * 5.5 + 1000 * 27.5) / M)
    assert t.cost("bedrock", "global.anthropic.claude-opus-5", 1000, output_tokens=1000) == \
        pytest.approx((1000 * 5 + 1000 * 25) / M)
    assert t.cost("vertex_ai", "claude-opus-4-8@default", 1000, output_tokens=1000) == pytest.approx(30_000 / M)
    # Google: reasoning at its own (= output) rate; batch halves all but cache reads (the built-in
    # provider's batch_undiscounted still applies to an imported model).
    assert t.cost("google", "gemini-3.5-flash", 1000, 1000, 0, 500, 1500) == \
        pytest.approx((1000 * 1.5 + 1000 * 0.15 + 2000 * 9) / M)
    assert t.cost("google", "gemini-3.1-pro-preview", 150_001, 50_000, 0, 1000, batch=True) == \
        pytest.approx((150_001 * 4 + 1000 * 18) * 0.5 / M + 50_000 * 0.4 / M)
    assert t.cost("google", "gemini-embedding-2", 1_000_000) == pytest.approx(0.20)


def test_builtin_table_agrees_with_the_real_entries_of_the_new_models(real):
    imported = PricingTable.loads("include_defaults: false\n" + real.yaml, "imported.yaml")
    builtin = PricingTable.load()
    snap = 1784917423.0
    same = [("openai", "gpt-5.6-sol"), ("openai", "gpt-5.6"), ("openai", "gpt-5.6-terra"), ("openai", "gpt-5.3-codex"),
            ("openai", "gpt-5.4-pro-2026-03-05"), ("anthropic", "claude-opus-4-7"),
            ("anthropic", "claude-opus-4-7-20260416"), ("anthropic", "claude-fable-5"),
            ("anthropic", "claude-sonnet-4-5"), ("vertex_ai", "claude-opus-4-8@default"),
            ("google", "gemini-3.5-flash"), ("google", "gemini-3.1-pro-preview"), ("google", "gemini-embedding-2"),
            ("vertex_ai", "gemini-3-flash-preview"), ("bedrock", "global.anthropic.claude-opus-5")]
    for provider, model in same:
        a, b = imported.price(provider, model, snap), builtin.price(provider, model, snap)
        assert a is not None and b is not None, (provider, model)
        assert a.rates() == pytest.approx(b.rates()), (provider, model)
        assert a.long_context_above == b.long_context_above, (provider, model)
        if a.long_context is not None:
            assert a.long_context.rates() == pytest.approx(b.long_context.rates()), (provider, model)
    # Bedrock's regional ids: the built-in table's regional_premium gives the reference's prices.
    assert builtin.price("bedrock", "us.anthropic.claude-opus-5").rates() == pytest.approx(
        imported.price("bedrock", "us.anthropic.claude-opus-5").rates())
    for name in ("us.anthropic.claude-opus-5", "eu.anthropic.claude-opus-5", "jp.anthropic.claude-opus-5"):
        assert builtin.price("bedrock", name).input == pytest.approx(5.5)
    assert builtin.price("bedrock", "global.anthropic.claude-opus-5").input == 5.0


def test_compare_tool_on_the_real_entries():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "compare_litellm.py"), str(REAL)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "prices compared as in force on 2026-07-24" in lines[0]
    assert lines[1] == ("SHARED: 16 reference entries priced by both, resolving to 12 built-in models; "
                        "15 agree on every rate, 1 differ")
    assert lines[2].startswith("DIFFERS gemini-3.1-pro-preview -> google/gemini-3.1-pro-preview: "
                               "cache_write above 200,000 0.25 vs 4")
    assert sorted(ln.split("]")[0] for ln in lines[3:]) == ["MISSING [fine-tune", "MISSING [live",
                                                            "MISSING [moving alias", "MISSING [moving alias"]


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
