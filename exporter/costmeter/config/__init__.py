"""Configuration: YAML loading that reports file, line and key, and the exporter's settings.

``loader``     YAML with the line of every key; ConfigError / ConfigErrors
``settings``   exporter.yaml, flags and environment into one Settings object
``resources``  the ``resources`` section of exporter.yaml
``billing``    the ``billing`` section of exporter.yaml (sources, intervals, where keys come from)

The lowest layer: it imports nothing else from costmeter.
"""
