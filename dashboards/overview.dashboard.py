"""costmeter-overview: what are we spending, how fast, and which budgets are in trouble."""
from costmeter_dashboards import (BUDGET_STATUS, GREEN, RED, YELLOW, bars, budget_table, increase_in_range, budget_variable, dashboard, period_variable,
                                  model_variable, provider_variable, row, sel, stat, steps, tenant_variable,
                                  timeseries)

S = sel("tenant", "provider", "model")
SPEND = f"cost_request_cost_usd_sum{{{S}}}"
UNPRICED = f"costmeter_unpriced_calls_total{{{sel('provider', 'model')}}}"
# Month elapsed as a fraction, 0-1, in UTC.
MONTH_ELAPSED = "(((day_of_month() - 1) * 86400 + time() % 86400) / (days_in_month() * 86400))"
FORECAST = ('max(budget_period:cost_budget_forecast_usd:sum{budget="global",period="monthly"}) or '
            f"sum(increase({SPEND}[$__range])) / {MONTH_ELAPSED}")

dashboard = dashboard("costmeter-overview", "Spend today and this month, burn rate, forecast and every budget.", [
    row("Spend"),
    stat("Spend today", f"sum(increase({SPEND}[$__range]))", "currencyUSD", time_from="now/d",
         description="Estimated LLM spend since 00:00 UTC (increase of the cost histogram's _sum)."),
    stat("Spend this month", f"sum(increase({SPEND}[$__range]))", "currencyUSD", time_from="now/M",
         description="Estimated LLM spend since the 1st of the month, 00:00 UTC."),
    stat("Burn rate (per day)", f"sum(tenant_provider_model:cost_request_cost_usd_sum:rate1h{{{S}}}) * 86400",
         "currencyUSD", graph=True, description="The last hour's spend rate, as USD per day."),
    stat("Forecast, end of month", FORECAST, "currencyUSD", time_from="now/M",
         description="The global monthly budget's forecast (from the exporter's ledger); without a global "
                     "budget, this month's spend so far divided by the fraction of the month that has passed."),
    timeseries("Spend rate by tenant (USD/hour)",
               [(f"sum by (tenant) (rate({SPEND}[$__rate_interval])) * 3600", "{{tenant}}")],
               "currencyUSD", stack=True, w=12),
    timeseries("Spend rate by provider and model (USD/hour)",
               [(f"sum by (provider, model) (rate({SPEND}[$__rate_interval])) * 3600", "{{provider}} {{model}}")],
               "currencyUSD", stack=True, w=12),
    bars("Spend in range by tenant", f"sort_desc(sum by (tenant) (increase({SPEND}[$__range])))", "{{tenant}}",
         "currencyUSD", w=12),
    bars("Spend in range by model", f"topk(10, sum by (provider, model) (increase({SPEND}[$__range])))",
         "{{provider}} {{model}}", "currencyUSD", w=12),
    row("Budgets"),
    budget_table(),
    stat("Budgets over a threshold", f"count({BUDGET_STATUS % (sel('budget'), sel('budget'))} > 0) or vector(0)",
         "none", thresholds=steps(GREEN, (1, YELLOW), (3, RED)), w=6,
         description="Budgets (and periods) at or above their own warning threshold."),
    stat("Calls to unpriced models",
         f"sum({increase_in_range(UNPRICED, 'provider, model')}) or vector(0)",
         "short", thresholds=steps(GREEN, (1, RED)), w=6,
         description="Their cost is unknown, not $0: add the model to pricing.yaml (CostUnpricedModel)."),
    stat("Error ratio", f"sum(rate(cost_provider_api_errors_total{{{S}}}[$__rate_interval])) / "
                        f"sum(rate(cost_provider_api_calls_total{{{S}}}[$__rate_interval]))", "percentunit",
         thresholds=steps(GREEN, (0.01, YELLOW), (0.05, RED)), w=6, graph=True,
         description="Share of provider calls that failed (rate limits, timeouts, errors)."),
    stat("Saved by the response cache", f"sum(increase(cost_cache_savings_usd_total{{{S}}}[$__range]))",
         "currencyUSD", w=6, description="Cost the response cache avoided in the dashboard's time range."),
], [tenant_variable(), provider_variable(), model_variable(), budget_variable(), period_variable()])
