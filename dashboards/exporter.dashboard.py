"""costmeter-exporter: is the exporter healthy: scrapes, ingest, rejects, overflow, reloads, billing pulls."""
from costmeter_dashboards import (GREEN, JOB, RED, alert_annotations, dashboard, row, stat, steps, table,
                                  timeseries)

RI = "[$__rate_interval]"

dashboard = dashboard("costmeter-exporter", "The exporter's own health: scrapes, ingest, rejected events, "
                                            "cardinality overflow, config reloads and billing pulls.", [
    row("Scrapes"),
    stat("Exporters up", f"sum(up{{{JOB}}})", "short", w=6, thresholds=steps(RED, (1, GREEN))),
    stat("Exporters down", f"count(up{{{JOB}}} == 0) or vector(0)", "short", w=6,
         thresholds=steps(GREEN, (1, RED))),
    stat("Config reload OK", f"min(costmeter_config_last_reload_successful{{{JOB}}})", "bool_yes_no", w=6,
         thresholds=steps(RED, (1, GREEN))),
    stat("Billing sources down", f"count(costmeter_billing_up{{{JOB}}} == 0) or vector(0)", "short", w=6,
         thresholds=steps(GREEN, (1, RED))),
    timeseries("Scrape duration", [(f"scrape_duration_seconds{{{JOB}}}", "{{instance}}")], "s", w=8),
    timeseries("Samples per scrape", [(f"scrape_samples_scraped{{{JOB}}}", "{{instance}}")], "short", w=8),
    table("Exporters", [
        (f"up{{{JOB}}}", "Up", "bool_yes_no"),
        (f"costmeter_build_info{{{JOB}}}", "Build", "none"),
        (f"time() - costmeter_config_last_reload_success_timestamp_seconds{{{JOB}}}", "Since last reload", "s"),
    ], w=8, h=8, hide=("Time", "__name__", "job"), rename={"instance": "Instance", "version": "Version"}),
    row("Ingest"),
    timeseries("Events ingested, rejected and duplicate (per second)", [
        (f"sum(rate(costmeter_ingest_events_total{{{JOB}}}{RI}))", "accepted"),
        (f"sum by (reason) (rate(costmeter_ingest_rejected_events_total{{{JOB}}}{RI}))", "rejected: {{reason}}"),
        (f"sum(rate(costmeter_ingest_duplicate_events_total{{{JOB}}}{RI}))", "duplicate"),
    ], "ops", w=12),
    timeseries("Label values folded into __overflow__ (per second)",
               [(f"sum by (label) (rate(costmeter_series_overflow_total{{{JOB}}}{RI}))", "{{label}}")], "ops", w=12,
               description="The cardinality guard: raise cardinality.max_values for that label if this is not 0."),
    row("Process"),
    timeseries("CPU (cores)", [(f"rate(process_cpu_seconds_total{{{JOB}}}{RI})", "{{instance}}")], "short", w=8),
    timeseries("Resident memory", [(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")], "bytes", w=8),
    timeseries("Billing pull duration", [(f"costmeter_billing_pull_duration_seconds{{{JOB}}}", "{{source}}")],
               "s", w=8),
], [], annotations=alert_annotations('alertname=~"CostExporterDown|CostBillingPullFailing"'))
