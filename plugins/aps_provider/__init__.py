"""The Autodesk Platform Services provider for Airflow: hooks, operators, sensors, triggers, links, plugin."""
