"""costmeter-budgets: each budget against its own thresholds, its forecast, and when it runs out."""
from costmeter_dashboards import (GREEN, RED, YELLOW, alert_annotations, budget_table, budget_variable, dashboard,
                                  dashed, period_variable, row, sel, stat, steps, table, timeseries)

S = sel("budget", "period")
LIMIT = f"budget_period:cost_budget_limit_usd:max{{{S}}}"
SPEND = f"budget_period:cost_budget_spend_usd:sum{{{S}}}"
FORECAST = f"budget_period:cost_budget_forecast_usd:sum{{{S}}}"
START = f"budget_period:cost_budget_period_start_timestamp_seconds:max{{{S}}}"
END = f"budget_period:cost_budget_period_end_timestamp_seconds:max{{{S}}}"
# Spend grows linearly to the forecast over the period, so it reaches the limit at
# start + (end - start) x limit / forecast; only budgets forecast to exceed their limit.
EXHAUSTION = f"({START} + ({END} - {START}) * {LIMIT} / ({FORECAST} > {LIMIT})) * 1000"

dashboard = dashboard("costmeter-budgets", "Utilization of each budget against its own thresholds, forecast and "
                                           "projected exhaustion.", [
    row("Status"),
    budget_table(h=9),
    stat("Worst utilization", f"max(budget_period:cost_budget_utilization_ratio:sum{{{S}}})", "percentunit",
         thresholds=steps(GREEN, (0.8, YELLOW), (1, RED)), w=6, graph=True,
         description="Colours at the default thresholds (80 %, 100 %); the chart on the right uses each budget's own."),
    stat("Budgets forecast to exceed", f"count({FORECAST} > {LIMIT}) or vector(0)", "none",
         thresholds=steps(GREEN, (1, RED)), w=6),
    stat("Period ends in (shortest)", f"min({END}) - time()", "s", w=6),
    stat("Spend of selected budgets", f"sum({SPEND})", "currencyUSD", w=6),
    row("Over time"),
    timeseries("Utilization against each budget's own thresholds",
               [(f"budget_period:cost_budget_utilization_ratio:sum{{{S}}}", "{{budget}} {{period}}"),
                (f"budget_period_level:cost_budget_threshold_ratio:max{{{S}}}", "{{budget}} {{period}} {{level}}")],
               "percentunit", w=24, h=9, overrides=[dashed("B")], legend_calcs=["lastNotNull", "max"],
               description="Solid: utilization (spend / limit, summed across exporters). Dashed: that budget's "
                           "warning, critical and exceeded thresholds from budgets.yaml."),
    timeseries("Spend, limit and forecast",
               [(SPEND, "{{budget}} {{period}} spend"), (LIMIT, "{{budget}} {{period}} limit"),
                (FORECAST, "{{budget}} {{period}} forecast")],
               "currencyUSD", w=12, h=9, overrides=[dashed("B")]),
    table("Projected exhaustion", [
        (EXHAUSTION, "Runs out", "dateTimeAsIso"),
        (f"{END} * 1000", "Period ends", "dateTimeAsIso"),
        (FORECAST, "Forecast", "currencyUSD"),
        (LIMIT, "Limit", "currencyUSD"),
    ], w=12, h=9, sort_by="Forecast", rename={"budget": "Budget", "period": "Period"},
        description="Budgets whose forecast exceeds the limit, and when spend reaches the limit at the "
                    "current rate (linear within the period)."),
    timeseries("Utilization reported by each exporter",
               [(f"cost_budget_utilization_ratio{{{S}}}", "{{instance}} {{budget}} {{period}}")], "percentunit",
               w=24, h=7, description="Each exporter's own share of a budget (sharded by tenant); the panels "
                                      "above sum the shares."),
], [budget_variable(), period_variable()],
    annotations=alert_annotations('alertname=~"CostBudget.*",budget=~"$budget"'))
