"""Operator side of hashpilot: fleet state, terminal and web views, metrics, Home Assistant
bridge and site power curtailment. Built on `mqtt_schema.consumer`; never imports `agent`."""
