"""costmeter-llm: tokens, calls, errors, cost per request and per token, caching, unpriced models."""
from costmeter_dashboards import (CACHE_HIT_TARGET, GREEN, RED, YELLOW, bars, dashboard, increase_in_range,
                                  model_variable,
                                  provider_variable, row, sel, stat, steps, table, tenant_variable, timeseries)

S = sel("tenant", "provider", "model")
PM = sel("provider", "model")
RI = "[$__rate_interval]"
CALLS = f"cost_provider_api_calls_total{{{S}}}"
ERRORS = f"cost_provider_api_errors_total{{{S}}}"
HITS = f"cost_cache_hits_total{{{S}}}"
LOOKUPS = f"cost_cache_lookups_total{{{S}}}"
COST = f"cost_request_cost_usd_sum{{{S}}}"


def quantile(q: float) -> tuple:
    return (f"histogram_quantile({q}, sum by (le) (rate(cost_request_cost_usd_bucket{{{S}}}{RI})))", f"p{round(q * 100)}")


dashboard = dashboard("costmeter-llm", "Tokens by type, calls and errors, cost per request and per 1k tokens, "
                                       "cache effectiveness and unpriced models.", [
    row("Traffic"),
    stat("Calls in range", f"sum(increase({CALLS}[$__range]))", "short", w=6),
    stat("Error ratio", f"sum(rate({ERRORS}{RI})) / sum(rate({CALLS}{RI}))", "percentunit",
         thresholds=steps(GREEN, (0.01, YELLOW), (0.05, RED)), w=6, graph=True),
    stat("Tokens in range", f"sum(increase(cost_provider_tokens_total{{{S}}}[$__range]))", "short", w=6),
    stat("Spend in range", f"sum(increase({COST}[$__range]))", "currencyUSD", w=6),
    timeseries("Tokens by type (per second)",
               [(f"sum by (token_type) (rate(cost_provider_tokens_total{{{S}}}{RI}))", "{{token_type}}")],
               "short", stack=True,
               description="Disjoint types (input excludes cached and cache writes, output excludes reasoning), "
                           "so the stack is the billable total."),
    timeseries("Calls by model (per second)",
               [(f"sum by (provider, model) (rate({CALLS}{RI}))", "{{provider}} {{model}}")], "reqps", stack=True),
    timeseries("Error ratio by model",
               [(f"sum by (provider, model) (rate({ERRORS}{RI})) / sum by (provider, model) (rate({CALLS}{RI}))",
                 "{{provider}} {{model}}")], "percentunit", minimum=0),
    timeseries("Latency p95 by model",
               [(f"histogram_quantile(0.95, sum by (le, provider, model) (rate(cost_request_duration_seconds_bucket{{{PM}}}{RI})))",
                 "{{provider}} {{model}}")], "s"),
    row("Cost"),
    timeseries("Cost per request", [quantile(0.5), quantile(0.95), quantile(0.99)], "currencyUSD",
               description="Quantiles of cost_request_cost_usd (bucket boundaries limit their precision)."),
    bars("Cost per 1k tokens by model",
         f"sum by (provider, model) (increase({COST}[$__range])) / "
         f"(sum by (provider, model) (increase(cost_provider_tokens_total{{{S}}}[$__range])) / 1000)",
         "{{provider}} {{model}}", "currencyUSD"),
    row("Cache"),
    stat("Cache hit ratio", f"sum(rate({HITS}{RI})) / sum(rate({LOOKUPS}{RI}))", "percentunit",
         thresholds=steps(RED, (CACHE_HIT_TARGET * 0.5, YELLOW), (CACHE_HIT_TARGET, GREEN)), w=6, h=8, graph=True,
         description=f"Green at the {CACHE_HIT_TARGET:.0%} target."),
    stat("Saved by the cache in range", f"sum(increase(cost_cache_savings_usd_total{{{S}}}[$__range]))",
         "currencyUSD", w=6, h=8, graph=True),
    timeseries("Cache hit ratio by model",
               [(f"sum by (provider, model) (rate({HITS}{RI})) / sum by (provider, model) (rate({LOOKUPS}{RI}))",
                 "{{provider}} {{model}}")], "percentunit", w=12, minimum=0, maximum=1,
               thresholds=steps(RED, (CACHE_HIT_TARGET, GREEN)), threshold_style="dashed"),
    row("Pricing"),
    table("Unpriced models", [
        (increase_in_range(f"costmeter_unpriced_calls_total{{{PM}}}", "provider, model"), "Calls in range", "short"),
    ], w=24, h=6, sort_by="Calls in range", rename={"provider": "Provider", "model": "Model"},
        description="Models with no price: their calls are counted, their cost is unknown (never $0). "
                    "Add them to pricing.yaml; `costmeter pricing show MODEL` explains how a name resolves."),
], [tenant_variable(), provider_variable(), model_variable()])
