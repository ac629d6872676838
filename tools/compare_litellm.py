"""Compare the built-in price table with LiteLLM's model_prices_and_context_window.json.

    .venv/bin/python tools/compare_litellm.py model_prices_and_context_window.json [--at 2026-07-24]

For every OpenAI, Anthropic and Google (gemini, vertex_ai) entry of the
reference that `costmeter pricing import-litellm` can map, it looks the name up
in the built-in table as an event with that provider would (so dated
snapshots, aliases and gateway prefixes count) and prints:

  * SHARED: how many reference entries, and how many distinct built-in models,
    both tables price; how many agree on every rate (input, cached input, both
    cache writes, output, reasoning, the long-context threshold and its rates,
    the batch discount where the reference gives batch prices);
  * DIFFERS: each rate where they disagree, reference first;
  * MISSING: the reference entries the built-in table leaves unpriced, each
    with a category (fine-tune, audio, search, free, deprecated, ...) so that
    the text and chat models still to add stand out.

Rates are compared as each table applies them, defaults included (a cache read
with no rate of its own costs the input rate), in force at --at (default: the
file's last_updated, else today). The result is summarised in docs/pricing.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporter"))

from costmeter.pricing import RATE_KEYS, PricingTable  # noqa: E402
from costmeter.pricing.litellm import _entry  # noqa: E402
from costmeter.pricing.table import _build_price  # noqa: E402

VENDORS = {"openai": "openai", "text-completion-openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}
NOT_TEXT = ("audio", "realtime", "tts", "-live", "image", "search", "transcribe", "computer-use", "robotics",
            "omni", "lyria", "gemma", "learnlm", "-exp")


def _lookup_provider(lp: str) -> str | None:
    if lp in VENDORS:
        return VENDORS[lp]
    if lp in ("vertex_ai-language-models", "vertex_ai", "vertex_ai-anthropic_models", "vertex_ai-embedding-models"):
        return "vertex_ai"
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _differences(ref, ours, ref_batch: float | None) -> list[str]:
    out = []
    for k in RATE_KEYS:
        a, b = getattr(ref, k), getattr(ours, k)
        if not _close(a, b):
            out.append(f"{k} {a:g} vs {b:g}")
    ra, oa = ref.long_context_above, ours.long_context_above
    if ra != oa:
        out.append(f"long-context threshold {ra} vs {oa}")
    elif ra is not None:
        for k in RATE_KEYS:
            a, b = getattr(ref.long_context, k), getattr(ours.long_context, k)
            if not _close(a, b):
                out.append(f"{k} above {ra:,} {a:g} vs {b:g}")
    if ref_batch is not None and not _close(ref_batch, ours.batch_discount):
        out.append(f"batch discount {ref_batch:g} vs {ours.batch_discount:g}")
    return out


def _category(name: str, e: dict, at: str) -> str:
    n = name.lower()
    dep = e.get("deprecation_date")
    if n.startswith("ft:") or "/ft:" in n:
        return "fine-tune"
    if isinstance(dep, str) and dep <= at:
        return f"deprecated {dep}"
    if not e.get("input_cost_per_token") and not e.get("output_cost_per_token"):
        return "free"
    for w in NOT_TEXT:
        if w in n:
            return w.strip("-")
    if e.get("mode") == "embedding":
        return "embedding"
    if "latest" in n:
        return "moving alias"
    return "text"


def compare(data: dict, at: str) -> dict:
    table = PricingTable.load()
    ts = datetime.fromisoformat(at).replace(tzinfo=timezone.utc).timestamp()
    shared, differs, missing, models = [], [], [], set()
    for name, e in data.items():
        if not isinstance(e, dict) or not isinstance(e.get("litellm_provider"), str):
            continue
        lp = _lookup_provider(e["litellm_provider"])
        if lp is None:
            continue
        got = _entry(name, e)
        if isinstance(got, str):
            continue
        _provider, model, spec = got
        hit = table.explain(lp, model)
        if hit is None:
            missing.append((name, lp, _category(name, e, at), spec))
            continue
        ours = table.price(lp, model, ts)
        if ours is None:
            missing.append((name, lp, "not yet priced at that date", spec))
            continue
        models.add((hit["provider"], hit["model"]))
        tier = spec.get("long_context")
        rates = {k: spec[k] for k in RATE_KEYS if k in spec}
        ref = _build_price(lp, model, None, rates, tier, spec.get("batch_discount", 0.0))
        d = _differences(ref, ours, spec.get("batch_discount"))
        shared.append(name)
        if d:
            differs.append((name, f"{hit['provider']}/{hit['model']}", d))
    return {"shared": shared, "models": models, "differs": differs, "missing": missing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--at", help="compare the prices in force on this date (YYYY-MM-DD)")
    args = ap.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        data = json.load(f)
    at = args.at or str(data.get("last_updated", ""))[:10] or datetime.now(timezone.utc).date().isoformat()
    r = compare(data, at)
    agree = len(r["shared"]) - len(r["differs"])
    print(f"reference: {args.file} ({len(data)} top-level entries, last_updated {data.get('last_updated', '-')}); "
          f"prices compared as in force on {at}")
    print(f"SHARED: {len(r['shared'])} reference entries priced by both, resolving to {len(r['models'])} "
          f"built-in models; {agree} agree on every rate, {len(r['differs'])} differ")
    for name, ours, d in sorted(r["differs"]):
        print(f"DIFFERS {name} -> {ours}: " + "; ".join(d) + "   (reference vs built-in)")
    for name, lp, cat, spec in sorted(r["missing"], key=lambda m: (m[2] != "text", m[2], m[0])):
        rates = ", ".join(f"{k} {spec[k]:g}" for k in RATE_KEYS if k in spec)
        lc = spec.get("long_context")
        if lc:
            rates += f", above {lc['above']:,}: " + ", ".join(f"{k} {lc[k]:g}" for k in RATE_KEYS if k in lc)
        print(f"MISSING [{cat}] {lp}: {name}: {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
