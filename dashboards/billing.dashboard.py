"""costmeter-billing: what the vendors billed against what costmeter estimated, and the billing pulls' health."""
from costmeter_dashboards import (GREEN, RED, YELLOW, bars, dashboard, dashed, query_variable,
                                  row, sel, stat, steps, table, timeseries)

SP = sel("source", "provider")
SRC = sel("source")
BILLED = f"cost_billed_usd{{{SP}}}"
ESTIMATED = 'cost_request_cost_usd_sum{provider=~"$provider"}'

dashboard = dashboard("costmeter-billing", "Billed spend this month (from the vendors' cost APIs and FOCUS exports) "
                                           "against the ledger's estimate, and whether the pulls work.", [
    row("Billed against estimated (this month, UTC)"),
    stat("Billed this month", f"sum({BILLED})", "currencyUSD", w=8,
         description="cost_billed_usd: cached from the last pull of each source."),
    stat("Estimated this month", f"sum(increase({ESTIMATED}[$__range]))", "currencyUSD", time_from="now/M", w=8),
    stat("Worst estimate / billed", f"max(abs(cost_estimate_to_billed_ratio{{{SP}}} - 1))", "percentunit", w=8,
         thresholds=steps(GREEN, (0.1, YELLOW), (0.25, RED)),
         description="How far the estimate is from the bill, at worst over sources and providers (0 = exact)."),
    bars("Billed by provider", f"sum by (provider) ({BILLED})", "{{provider}}", "currencyUSD", w=8),
    bars("Estimated by provider", f"sum by (provider) (increase({ESTIMATED}[$__range]))", "{{provider}}",
         "currencyUSD", w=8, time_from="now/M"),
    timeseries("Estimate / billed ratio", [(f"cost_estimate_to_billed_ratio{{{SP}}}", "{{source}} {{provider}}"),
                                           ("vector(1)", "exact")],
               "percentunit", w=8, overrides=[dashed("B")],
               description="Over the complete days of this month that the source has billed; 1 = the estimate "
                           "matches the bill."),
    table("Billed by service", [(f"sum by (source, provider, service) ({BILLED})", "Billed", "currencyUSD")],
          w=24, h=8, sort_by="Billed", rename={"source": "Source", "provider": "Provider", "service": "Service"}),
    row("Billing sources"),
    table("Source health", [
        (f"costmeter_billing_up{{{SRC}}}", "Up", "bool_yes_no"),
        (f"time() - costmeter_billing_last_success_timestamp_seconds{{{SRC}}}", "Since last success", "s"),
        (f"costmeter_billing_pull_duration_seconds{{{SRC}}}", "Last pull took", "s"),
        (f"increase(costmeter_billing_api_cost_usd_total{{{SRC}}}[$__range])", "API cost in range", "currencyUSD"),
    ], w=12, h=8, rename={"source": "Source"}, hide=("Time", "job", "instance")),
    timeseries("Sources up", [(f"min by (source) (costmeter_billing_up{{{SRC}}})", "{{source}}")], "bool_yes_no",
               w=12, minimum=0, maximum=1),
], [query_variable("source", "Billing source", "costmeter_billing_up"),
    query_variable("provider", "Provider", "cost_provider_api_calls_total")])
