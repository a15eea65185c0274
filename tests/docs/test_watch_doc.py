"""docs/watch.md's systemd unit, Kubernetes Deployment, alert rules and metrics table agree with the code.

They cannot run here (they need systemd, a cluster, a Prometheus), so they are parsed and
checked against what ``WatchServer`` really serves: a renamed metric or a probe on a path
that answers 404 fails here, not in a user's cluster.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import yaml

from rlorinfra.cli.watch_server import is_loopback, metric_families, parse_metrics_addr
from rlorinfra.operations.watch_status import WatchStatus

DOC = Path(__file__).resolve().parents[2] / "docs" / "watch.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SERVED_PATHS = {"/metrics", "/healthz"}
DURATION = re.compile(r"^(\d+)(s|min|m|h)?$")


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def seconds(value: str) -> int:
    number, unit = DURATION.match(value.strip()).groups()  # type: ignore[union-attr]
    return int(number) * {"s": 1, None: 1, "min": 60, "m": 60, "h": 3600}[unit]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def the_deployment() -> dict[str, Any]:
    documents = [doc for body in blocks("yaml") for doc in yaml.safe_load_all(body)]
    return next(doc for doc in documents if doc.get("kind") == "Deployment")


def test_the_systemd_unit_is_notify_with_a_watchdog_above_the_interval() -> None:
    (unit,) = blocks("ini")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(unit)
    service = parser["Service"]
    assert service["Type"] == "notify"
    args = service["ExecStart"].split()
    assert args[1] == "watch"
    assert seconds(service["WatchdogSec"]) >= 3 * seconds(option(args, "--interval"))
    assert seconds(service["TimeoutStopSec"]) > 30  # watch promises to exit within 30 s
    host, _ = parse_metrics_addr(option(args, "--metrics-addr"))
    assert is_loopback(host) and "--metrics-allow-remote" not in args


def test_the_kubernetes_probes_hit_a_served_path_on_the_metrics_port() -> None:
    pod = the_deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    host, port = parse_metrics_addr(option(args, "--metrics-addr"))
    assert not is_loopback(host) and "--metrics-allow-remote" in args  # the kubelet probes from outside
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert ports[container[probe]["httpGet"]["port"]] == port
    assert pod["terminationGracePeriodSeconds"] > 30
    annotations = the_deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in SERVED_PATHS and int(annotations["prometheus.io/port"]) == port


def served_metric_names() -> set[str]:
    return {family.name for family in metric_families(WatchStatus())}


def test_the_metrics_table_lists_exactly_what_is_served() -> None:
    documented = set(re.findall(r"^\| `(rlorinfra_watch_\w+)", DOC.read_text(), re.MULTILINE))
    assert documented == served_metric_names()


def test_the_alert_rules_use_only_served_metrics() -> None:
    rules = next(doc for body in blocks("yaml") for doc in yaml.safe_load_all(body) if "groups" in doc)
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"rlorinfra_\w+", expr)}
    assert used and used <= served_metric_names()
