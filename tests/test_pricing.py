"""Tests for costmeter.pricing: hand-computed costs, resolution, overrides, validation."""
from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from costmeter.pricing import table as pricing
from costmeter.pricing import ModelPrice, PricingTable
from costmeter.config.loader import ConfigError, ConfigErrors

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "pricing.yaml"
PACKAGE_DATA = ROOT / "exporter" / "costmeter" / "pricing" / "data" / "pricing.yaml"


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def table() -> PricingTable:
    return PricingTable.load()


def mini(text: str) -> PricingTable:
    """A table from only the given YAML (no built-in models)."""
    return PricingTable.loads("include_defaults: false\n" + textwrap.dedent(text))


# ---- hand-computed costs ------------------------------------------------------

def test_openai_cached_and_reasoning(table):
    # gpt-4o-mini: input 0.15, cached 0.075, output 0.60, reasoning = output.
    got = table.cost("openai", "gpt-4o-mini-2024-07-18", input_tokens=600, cached_input_tokens=400,
                     output_tokens=300, reasoning_tokens=200)
    want = (600 * 0.15 + 400 * 0.075 + 300 * 0.60 + 200 * 0.60) / 1e6    # = 0.00042
    assert got == pytest.approx(want, rel=1e-12)
    assert got == pytest.approx(0.00042, rel=1e-12)


def test_o4_mini_reasoning_at_output_rate(table):
    got = table.cost("openai", "o4-mini", input_tokens=10_000, cached_input_tokens=90_000,
                     output_tokens=1_000, reasoning_tokens=5_000)
    assert got == pytest.approx((10_000 * 1.10 + 90_000 * 0.275 + 6_000 * 4.40) / 1e6)


def test_anthropic_cache_write_and_read(table):
    # claude-3-5-sonnet: input 3, cache write 3.75 (1.25x), cache read 0.30 (0.1x), output 15.
    got = table.cost("anthropic", "claude-3-5-sonnet-20241022", input_tokens=21, cache_write_tokens=188_086,
                     output_tokens=393)
    assert got == pytest.approx((21 * 3 + 188_086 * 3.75 + 393 * 15) / 1e6)
    got = table.cost("anthropic", "claude-3-5-sonnet-20241022", input_tokens=21, cached_input_tokens=188_086,
                     output_tokens=393)
    assert got == pytest.approx((21 * 3 + 188_086 * 0.30 + 393 * 15) / 1e6)


def test_anthropic_cache_multipliers_hold_for_every_cached_claude(table):
    for provider, model, p in table.models():
        if provider != "anthropic" or model == "claude-3-sonnet":
            continue
        # Anthropic publishes these rounded to the cent (claude-3-haiku: $0.30 and $0.03).
        assert p.cache_write == pytest.approx(1.25 * p.input, abs=0.0125 + 1e-9), model
        assert p.cached_input == pytest.approx(0.1 * p.input, abs=0.005 + 1e-9), model


def test_long_context_boundary_sonnet(table):
    # Prompt = input + cached + cache_write. Exactly 200,000 is the normal tier.
    at_limit = table.cost("anthropic", "claude-sonnet-4-5-20250929", input_tokens=150_000,
                          cached_input_tokens=40_000, cache_write_tokens=10_000, output_tokens=1_000)
    assert at_limit == pytest.approx((150_000 * 3 + 40_000 * 0.30 + 10_000 * 3.75 + 1_000 * 15) / 1e6)
    over = table.cost("anthropic", "claude-sonnet-4-5-20250929", input_tokens=150_001,
                      cached_input_tokens=40_000, cache_write_tokens=10_000, output_tokens=1_000)
    # The higher rates apply to the whole request, output included.
    assert over == pytest.approx((150_001 * 6 + 40_000 * 0.60 + 10_000 * 7.50 + 1_000 * 22.50) / 1e6)


def test_long_context_boundary_gemini(table):
    assert table.cost("google", "gemini-2.5-pro", input_tokens=200_000, output_tokens=1_000) == \
        pytest.approx((200_000 * 1.25 + 1_000 * 10) / 1e6)
    assert table.cost("google", "gemini-2.5-pro", input_tokens=200_001, output_tokens=1_000) == \
        pytest.approx((200_001 * 2.50 + 1_000 * 15) / 1e6)
    # Thinking tokens follow the tier's output rate.
    assert table.cost("google", "gemini-2.5-pro", input_tokens=200_001, reasoning_tokens=1_000) == \
        pytest.approx((200_001 * 2.50 + 1_000 * 15) / 1e6)


def test_effective_date_boundary(table):
    cut = ts("2025-06-10T00:00:00")
    before = table.cost("openai", "o3", input_tokens=1_000_000, output_tokens=1_000_000, at=cut - 1)
    on = table.cost("openai", "o3", input_tokens=1_000_000, output_tokens=1_000_000, at=cut)
    assert before == pytest.approx(10 + 40)
    assert on == pytest.approx(2 + 8)
    assert table.price("openai", "o3", at=cut - 1).input == 10.0
    assert table.price("openai", "o3", at=cut).effective_from == cut


def test_effective_dates_in_user_file_and_before_first_date():
    t = mini("""
        providers:
          acme:
            models:
              m1:
                prices:
                  - {effective_from: 2026-01-01, input: 1, output: 2}
                  - {effective_from: "2026-03-01T12:00:00Z", input: 3, output: 4}
    """)
    assert t.cost("acme", "m1", input_tokens=1_000_000, at=ts("2025-12-31T23:59:59")) is None
    assert t.cost("acme", "m1", input_tokens=1_000_000, at=ts("2026-01-01T00:00:00")) == pytest.approx(1)
    assert t.cost("acme", "m1", input_tokens=1_000_000, at=ts("2026-03-01T11:59:59")) == pytest.approx(1)
    assert t.cost("acme", "m1", input_tokens=1_000_000, at=ts("2026-03-01T12:00:00")) == pytest.approx(3)
    assert t.cost("acme", "m1", input_tokens=1_000_000) == pytest.approx(3)      # now


def test_batch_discount(table):
    full = table.cost("anthropic", "claude-haiku-4-5", input_tokens=1_000_000, output_tokens=100_000)
    half = table.cost("anthropic", "claude-haiku-4-5", input_tokens=1_000_000, output_tokens=100_000, batch=True)
    assert full == pytest.approx(1.0 + 0.5)
    assert half == pytest.approx(0.75)
    # Meta (Groq) sets no batch discount: a batch event pays full price.
    assert table.cost("meta", "llama-3.1-8b-instant", 1_000_000, batch=True) == pytest.approx(0.05)


def test_batch_discount_model_overrides_provider():
    t = mini("""
        providers:
          acme:
            batch_discount: 0.5
            models:
              a: {input: 10, output: 10}
              b: {input: 10, output: 10, batch_discount: 0.25}
              c: {input: 10, output: 10, long_context: {above: 10, input: 20, output: 20}}
    """)
    assert t.cost("acme", "a", 1_000_000, batch=True) == pytest.approx(5)
    assert t.cost("acme", "b", 1_000_000, batch=True) == pytest.approx(7.5)
    assert t.cost("acme", "c", 1_000_000, batch=True) == pytest.approx(10)     # long tier 20, then 50 % off


def test_fallback_rates():
    t = mini("""
        providers:
          acme:
            models:
              plain: {input: 2, output: 8}
              own: {input: 2, output: 8, reasoning: 3, cached_input: 0.5, cache_write: 2.5}
    """)
    p = t.price("acme", "plain")
    assert (p.cached_input, p.cache_write, p.reasoning) == (2, 2, 8)
    assert t.cost("acme", "plain", 1, 1, 1, 1, 1) == pytest.approx((2 + 2 + 2 + 8 + 8) / 1e6)
    assert t.cost("acme", "own", 1, 1, 1, 1, 1) == pytest.approx((2 + 0.5 + 2.5 + 8 + 3) / 1e6)


def test_max_cost_is_an_upper_bound(table):
    # claude-sonnet-4: dearest input rate is the 1-hour cache write (2x); long tier above 200k.
    assert table.max_cost("anthropic", "claude-sonnet-4-20250514", 100_000, 4_000) == \
        pytest.approx((100_000 * 6.00 + 4_000 * 15) / 1e6)
    assert table.max_cost("anthropic", "claude-sonnet-4-20250514", 300_000, 4_000) == \
        pytest.approx((300_000 * 12.00 + 4_000 * 22.50) / 1e6)
    bound = table.max_cost("openai", "gpt-4o", 5_000, 1_000)
    for split in [(5_000, 0, 0, 1_000, 0), (0, 5_000, 0, 0, 1_000), (2_000, 3_000, 0, 500, 500)]:
        assert table.cost("openai", "gpt-4o", *split) <= bound + 1e-15
    assert table.max_cost("openai", "no-such-model", 10, 10) is None


# ---- resolution ---------------------------------------------------------------

@pytest.mark.parametrize("provider, name, family", [
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),     # exact entry beats date stripping
    ("openai", "GPT-4o-Mini", "gpt-4o-mini"),
    ("openai", "gpt-4-0613", "gpt-4"),
    ("openai", "gpt-4-1106-preview", "gpt-4-turbo"),
    ("openai", "gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"),
    ("openai", "o3-2025-04-16", "o3"),
    ("openai", "chatgpt-4o-latest", "chatgpt-4o-latest"),      # its own price, not gpt-4o's
    ("openai", "gpt-5-chat-latest", "gpt-5"),
    ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-0", "claude-opus-4"),
    ("anthropic", "claude-3-opus-20240229", "claude-3-opus"),
    ("Anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("google", "models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("google", "gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
    ("meta", "llama-3.3-70b-versatile", "llama-3.3-70b"),
    ("meta", "meta-llama/llama-4-scout-17b-16e-instruct", "llama-4-scout"),
])
def test_resolve_shipped(table, provider, name, family):
    assert table.resolve(provider, name) == family


def test_most_specific_pattern_wins():
    t = mini("""
        providers:
          openai:
            models:
              gpt-4o: {input: 2.5, output: 10, patterns: ["gpt-4o*"]}
              gpt-4o-mini: {input: 0.15, output: 0.6, patterns: ["gpt-4o-mini*"]}
              ft: {input: 0.3, output: 1.2, regex: ['ft:gpt-4o-mini-2024-07-18:[a-z0-9-]+::\\w+']}
    """)
    assert t.resolve("openai", "gpt-4o-mini-search-preview") == "gpt-4o-mini"
    assert t.resolve("openai", "gpt-4o-search-preview") == "gpt-4o"
    assert t.resolve("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123") == "ft"
    assert t.resolve("openai", "gpt-4") is None
    # Order in the file does not matter, specificity does.
    t2 = mini("""
        providers:
          openai:
            models:
              gpt-4o-mini: {input: 0.15, output: 0.6, patterns: ["gpt-4o-mini*"]}
              gpt-4o: {input: 2.5, output: 10, patterns: ["gpt-4o*"]}
    """)
    assert t2.resolve("openai", "gpt-4o-mini-transcribe") == "gpt-4o-mini"


def test_unknown_model_and_provider_are_none(table):
    assert table.cost("openai", "gpt-9-ultra", 100, output_tokens=100) is None
    assert table.price("openai", "gpt-9-ultra") is None
    assert table.resolve("openai", "gpt-9-ultra") is None
    assert table.cost("nosuchprovider", "gpt-4o", 100) is None
    assert table.cost("openai", "", 100) is None
    # Models are per provider: an Anthropic model is not priced under openai.
    assert table.cost("openai", "claude-3-opus", 100) is None


def test_resolution_is_cached_and_bounded(monkeypatch):
    t = mini("""
        providers:
          acme: {models: {m: {input: 1, output: 1}}}
    """)
    calls = []
    real = t.explain
    monkeypatch.setattr(t, "explain", lambda p, m: calls.append(m) or real(p, m))
    for _ in range(5):
        assert t.cost("acme", "m-2025-01-01", 1_000_000) == pytest.approx(1)
    assert calls == ["m-2025-01-01"]
    monkeypatch.setattr(pricing, "_CACHE_LIMIT", 3)
    for i in range(10):
        t.cost("acme", f"x{i}", 1)
    assert len(t._cache) <= 3


# ---- the shipped table -----------------------------------------------------------

LEGACY = {
    ("openai", "gpt-4-turbo"): (10, 30), ("openai", "gpt-4"): (30, 60),
    ("openai", "gpt-3.5-turbo"): (0.50, 1.50), ("openai", "gpt-3.5-turbo-16k"): (3, 4),
    ("anthropic", "claude-3-opus"): (15, 75), ("anthropic", "claude-3-sonnet"): (3, 15),
    ("anthropic", "claude-3-haiku"): (0.25, 1.25), ("google", "gemini-pro"): (0.50, 1.50),
    ("google", "gemini-ultra"): (10, 30), ("meta", "llama-2-70b"): (0.70, 0.90),
    ("meta", "llama-2-13b"): (0.20, 0.30),
}


def test_legacy_models_present_with_their_prices(table):
    assert len(LEGACY) == 11
    for (provider, model), (inp, out) in LEGACY.items():
        p = table.price(provider, model)
        assert p is not None, f"{provider}/{model} missing"
        assert (p.input, p.output) == (inp, out), f"{provider}/{model}"


def test_current_models_present(table):
    have = {(p, m) for p, m, _ in table.models()}
    for key in [("openai", "gpt-4o"), ("openai", "gpt-4.1"), ("openai", "gpt-5"), ("openai", "o3"),
                ("openai", "o4-mini"), ("openai", "text-embedding-3-small"),
                ("anthropic", "claude-opus-4-1"), ("anthropic", "claude-sonnet-4-5"),
                ("anthropic", "claude-haiku-4-5"), ("anthropic", "claude-3-7-sonnet"),
                ("google", "gemini-2.5-pro"), ("google", "gemini-2.5-flash"), ("google", "gemini-2.0-flash"),
                ("meta", "llama-3.3-70b"), ("meta", "llama-4-maverick")]:
        assert key in have, key
    p = table.price("openai", "gpt-4o-mini")
    assert (p.input, p.cached_input, p.output) == (0.15, 0.075, 0.60)


def test_every_shipped_model_has_input_and_output_rates():
    import yaml
    raw = yaml.safe_load(PACKAGE_DATA.read_text())
    n = 0
    for provider, spec in raw["providers"].items():
        for model, m in spec["models"].items():
            entries = m.get("prices", [m])
            for e in entries:
                assert "input" in e and "output" in e, f"{provider}/{model}"
                assert e["input"] > 0, f"{provider}/{model} input"
            n += 1
    assert n == len(PricingTable.load().models()) >= 50


def test_config_and_package_data_are_identical():
    assert CONFIG.read_bytes() == PACKAGE_DATA.read_bytes(), \
        "config/pricing.yaml and exporter/costmeter/pricing/data/pricing.yaml differ: copy one over the other"
    assert pricing.default_pricing_path().endswith("pricing.yaml")
    assert Path(pricing.default_pricing_path()).read_bytes() == CONFIG.read_bytes()


def test_header_names_date_and_sources():
    head = CONFIG.read_text().split("\nproviders:", 1)[0]
    assert "2026-11-22" in head
    for word in ("openai.com", "platform.claude.com", "ai.google.dev", "Groq", "config/pricing.yaml",
                 "package data"):
        assert word in head, word


# ---- overrides -------------------------------------------------------------------

def test_user_file_replaces_and_extends(tmp_path):
    f = tmp_path / "pricing.yaml"
    f.write_text(textwrap.dedent("""
        providers:
          openai:
            models:
              gpt-4o-mini: {input: 0.10, output: 0.40}       # negotiated price
          anthropic:
            batch_discount: 0.25
          selfhosted:
            models:
              qwen-72b: {input: 0.30, output: 0.30, aliases: [qwen2.5-72b-instruct]}
    """))
    t = PricingTable.load(str(f))
    p = t.price("openai", "gpt-4o-mini-2024-07-18")
    # The whole entry is replaced: the cached rate now falls back to the new input.
    assert (p.input, p.cached_input, p.output) == (0.10, 0.10, 0.40)
    assert t.resolve("selfhosted", "Qwen2.5-72B-Instruct") == "qwen-72b"
    assert t.cost("selfhosted", "qwen-72b", 1_000_000, output_tokens=1_000_000) == pytest.approx(0.60)
    # Untouched built-ins remain; provider batch_discount replaced.
    assert t.price("openai", "gpt-4o").input == 2.50
    assert t.cost("anthropic", "claude-haiku-4-5", 1_000_000, batch=True) == pytest.approx(0.75)
    # The built-in table itself is unchanged.
    assert PricingTable.load().price("openai", "gpt-4o-mini").input == 0.15


def test_user_model_name_beats_builtin_alias():
    t = PricingTable.loads(textwrap.dedent("""
        providers:
          openai:
            models:
              gpt-5-chat-latest: {input: 5, output: 15}
    """))
    assert PricingTable.load().resolve("openai", "gpt-5-chat-latest") == "gpt-5"     # a built-in alias
    assert t.resolve("openai", "gpt-5-chat-latest") == "gpt-5-chat-latest"
    assert t.price("openai", "gpt-5-chat-latest").input == 5


def test_user_pattern_wins_tie_with_builtin():
    t = PricingTable.loads(textwrap.dedent("""
        providers:
          meta:
            models:
              llama-3.3-70b-together: {input: 0.88, output: 0.88, patterns: ["*llama-3.3-70b*"]}
    """))
    assert t.resolve("meta", "meta-llama/Llama-3.3-70B-Instruct-Turbo") == "llama-3.3-70b-together"
    assert t.resolve("meta", "llama-3.3-70b-versatile") == "llama-3.3-70b"      # explicit alias still first


def test_include_defaults_false(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("include_defaults: false\nproviders:\n  openai:\n    models:\n      gpt-4o: {input: 1, output: 2}\n")
    t = PricingTable.load(str(f))
    assert [(p, m) for p, m, _ in t.models()] == [("openai", "gpt-4o")]
    assert t.cost("openai", "gpt-4o-mini", 100) is None
    assert t.cost("anthropic", "claude-3-opus", 100) is None
    empty = PricingTable.loads("include_defaults: false\n")
    assert empty.models() == []


def test_empty_user_file_means_builtin_table(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing here yet\n")
    assert len(PricingTable.load(str(f)).models()) == len(PricingTable.load().models())


# ---- validation --------------------------------------------------------------------

def load_error(tmp_path, text: str) -> ConfigError:
    f = tmp_path / "pricing.yaml"
    f.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises((ConfigError, ConfigErrors)) as ei:
        PricingTable.load(str(f))
    e = ei.value
    if isinstance(e, ConfigErrors):
        assert len(e.errors) == 1, str(e)
        e = e.errors[0]
    assert e.file == str(f)
    return e


@pytest.mark.parametrize("text, line, key, words", [
    ("""
     providers:
       openai:
         models:
           gpt-4o: {input: 2.5, output: 10}
           bad: {input: -1, output: 1}
     """, 5, "providers.openai.models.bad.input", ">= 0"),
    ("""
     providers:
       openai:
         models:
           m:
             input: 1
             completion: 2
             output: 3
     """, 6, "providers.openai.models.m.completion", "unknown token type"),
    ("""
     providers:
       openai:
         models:
           m:
             prices:
               - {input: 1, output: 1}
               - {effective_from: 2025-13-40, input: 2, output: 2}
     """, 7, "providers.openai.models.m.prices[1].effective_from", "month must be in 1..12"),
    ("""
     providers:
       openai:
         models:
           m:
             input: 1
             output: 1
             regex: ["gpt-(4o"]
     """, 7, "providers.openai.models.m.regex[0]", "invalid regular expression"),
    ("""
     pricing:
       openai: {}
     """, 1, "pricing", "unknown top-level key"),
    ("""
     providers:
       openai:
         models:
           m: {input: 1}
     """, 4, "providers.openai.models.m", "missing 'output'"),
    ("""
     providers:
       OpenAI:
         models: {}
     """, 2, "providers.OpenAI", "lower-case"),
    ("""
     providers:
       openai:
         batch_discount: 1.5
     """, 3, "providers.openai.batch_discount", "<= 1"),
    ("""
     providers:
       anthropic:
         models:
           m:
             input: 1
             output: 1
             long_context: {input: 2, output: 2}
     """, 7, "providers.anthropic.models.m.long_context", "missing 'above'"),
    ("""
     providers:
       anthropic:
         models:
           m:
             input: 1
             output: 1
             long_context: {above: 200k, input: 2}
     """, 7, "providers.anthropic.models.m.long_context.above", "whole number"),
    ("""
     providers:
       openai:
         models:
           a: {input: 1, output: 1, aliases: [x]}
           b: {input: 1, output: 1, aliases: [y, x]}
     """, 5, "providers.openai.models.b.aliases", "already an alias of a"),
    ("""
     providers:
       openai:
         models:
           gpt-4o-mini: {input: 1, output: 1, aliases: [gpt-4o]}
     """, 4, "providers.openai.models.gpt-4o-mini.aliases", "name of another model"),
    ("""
     providers:
       openai:
         models:
           m:
             input: 1
             prices:
               - {input: 1, output: 1}
     """, 5, "providers.openai.models.m.input", "not both"),
    ("""
     providers:
       openai:
         models:
           m:
             prices:
               - {input: 1, output: 1}
               - {input: 2, output: 2}
     """, 7, "providers.openai.models.m.prices[1]", "effective_from"),
    ("""
     providers:
       openai:
         models:
           m:
             prices:
               - {effective_from: 2025-01-01, input: 1, output: 1}
               - {effective_from: 2025-01-01, input: 2, output: 2}
     """, 7, "providers.openai.models.m.prices[1].effective_from", "already given"),
    ("""
     include_defaults: "no"
     """, 1, "include_defaults", "true or false"),
    ("""
     providers:
       openai:
         models:
           m: {input: 1, output: 1}
           M: {input: 2, output: 2}
     """, 5, "providers.openai.models.M", "defined twice"),
])
def test_bad_files_name_line_and_key(tmp_path, text, line, key, words):
    e = load_error(tmp_path, text)
    assert (e.line, e.key) == (line, key), e.render()
    assert words in e.message, e.render()
    assert e.render().startswith(f"{e.file}:{line}: {key}: ")


def test_alias_clashing_with_builtin_model_blames_user_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("providers:\n  openai:\n    models:\n      mine:\n        input: 1\n        output: 1\n"
                 "        aliases: [gpt-4o]\n")
    with pytest.raises(ConfigError) as ei:
        PricingTable.load(str(f))
    assert ei.value.file == str(f) and ei.value.line == 7 and "gpt-4o" in ei.value.message


def test_several_errors_reported_at_once(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("providers:\n  openai:\n    models:\n      a: {input: -1, output: 1}\n      b: {input: 1, outptu: 1}\n")
    with pytest.raises(ConfigErrors) as ei:
        PricingTable.load(str(f))
    where = sorted((e.line, e.key) for e in ei.value.errors)
    assert where == [(4, "providers.openai.models.a.input"), (5, "providers.openai.models.b"),
                     (5, "providers.openai.models.b.outptu")]


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError) as ei:
        PricingTable.load(str(tmp_path / "nope.yaml"))
    assert "cannot read" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        PricingTable.loads("providers: [\n", file="x.yaml")
    assert ei.value.file == "x.yaml" and "invalid YAML" in ei.value.message


def test_model_price_object(table):
    p = table.price("anthropic", "claude-sonnet-4")
    assert isinstance(p, ModelPrice)
    assert p.rates() == {"input": 3.0, "cached_input": 0.30, "cache_write": 3.75, "cache_write_1h": 6.0,
                         "output": 15.0, "reasoning": 15.0}
    assert p.long_context_above == 200_000 and p.long_context.input == 6.0
    assert p.cost(200_001, output_tokens=1) == table.cost("anthropic", "claude-sonnet-4", 200_001, output_tokens=1)
    assert p.batch_discount == 0.5
