"""costmeter-infrastructure: CPU and memory of the monitored targets, and what they cost."""
from costmeter_dashboards import bars, dashboard, query_variable, row, sel, stat, timeseries

T = sel("target")
COST = f"cost_infrastructure_usd_total{{{T}}}"

dashboard = dashboard("costmeter-infrastructure", "CPU and memory of the host, the exporter and configured "
                                                  "processes, priced with the configured hourly rates.", [
    row("Cost"),
    stat("Infrastructure cost in range", f"sum(increase({COST}[$__range]))", "currencyUSD", w=8),
    stat("CPU cost in range", f'sum(increase(cost_infrastructure_usd_total{{{T},resource="cpu"}}[$__range]))',
         "currencyUSD", w=8),
    stat("Memory cost in range", f'sum(increase(cost_infrastructure_usd_total{{{T},resource="memory"}}[$__range]))',
         "currencyUSD", w=8),
    timeseries("Cost rate by target and resource (USD/hour)",
               [(f"sum by (target, resource) (rate({COST}[$__rate_interval])) * 3600", "{{target}} {{resource}}")],
               "currencyUSD", stack=True, w=12),
    bars("Cost in range by target", f"sum by (target) (increase({COST}[$__range]))", "{{target}}",
         "currencyUSD", w=12),
    row("Usage"),
    timeseries("CPU in use (cores)", [(f"sum by (target) (cost_cpu_usage_cores{{{T}}})", "{{target}}")],
               "short", minimum=0),
    timeseries("Resident memory", [(f"sum by (target) (cost_memory_usage_bytes{{{T}}})", "{{target}}")],
               "bytes", minimum=0),
], [query_variable("target", "Target", "cost_cpu_usage_cores")])
