"""Helpers for the alerting tests: real Prometheus, Alertmanager and costmeter
exporters on loopback ports, and a stand-in for Slack's incoming webhook."""
