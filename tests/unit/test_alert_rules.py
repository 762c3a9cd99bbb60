"""The Prometheus alert rules in deploy/prometheus/: valid, firing on what they should (promtool's own unit
tests, aps-alerts.test.yaml), and reading only series the statsd mapping makes from metrics we send."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from aps_devstack.debian import ensure_debian_package

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
OUR_SERIES = re.compile(r"\bairflow_aps_[a-z_]+\b")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # Debian's `prometheus` package carries promtool; the project installs it when missing, as it does Redis.
    promtool = ensure_debian_package("prometheus", binary="promtool")
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid() -> None:
    checked = _promtool("check", "rules", "aps-alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_on_what_it_should_and_not_on_its_quiet_neighbours() -> None:
    tested = _promtool("test", "rules", "aps-alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", (RULES_DIR / "aps-alerts.test.yaml").read_text()))
    rules = yaml.safe_load((RULES_DIR / "aps-alerts.yaml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert tested_alerts == alerts  # every alert has a test


def test_the_rules_read_only_series_the_statsd_mapping_makes() -> None:
    rules = (RULES_DIR / "aps-alerts.yaml").read_text()
    mapping = yaml.safe_load((RULES_DIR / "statsd-mapping.yaml").read_text())
    mapped = {entry["name"] for entry in mapping["mappings"]}
    used = set(OUR_SERIES.findall(rules))
    assert used
    assert used <= mapped, f"series the alert rules read but no mapping makes: {sorted(used - mapped)}"
