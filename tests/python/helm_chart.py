"""Helm's own engine (helm-python-sdk, which embeds the Helm Go SDK) on a chart.

Usage:
  helm_chart.py lint CHART VALUES_JSON         the lint report, as JSON
  helm_chart.py render CHART VALUES_JSON NAME NAMESPACE
                                               {template path: manifest}, as JSON
  helm_chart.py install CHART VALUES_JSON NAME NAMESPACE KUBECONFIG
                                               installs (CRDs first, as helm install does)
                                               and prints the release summary, as JSON
Exits non-zero, with Helm's message on stderr, when Helm refuses.
"""

import json
import sys

import helm_python as helm


def main(command: str, chart: str, values_json: str, *rest: str) -> None:
    values = json.loads(values_json)
    if command == "lint":
        report = helm.lint(chart, values, strict=True, kube_version="v1.32.0")
        print(json.dumps(report))
    elif command == "render":
        name, namespace = rest
        with helm.Chart.load(chart) as loaded:
            manifests = loaded.render(values, name=name, namespace=namespace, is_install=True)
        print(json.dumps(manifests))
    elif command == "install":
        name, namespace, kubeconfig = rest
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config:
            release = config.install(
                chart, name, values, namespace=namespace, create_namespace=True, timeout=60
            )
        release.pop("manifest", None)
        print(json.dumps(release, default=str))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except helm.HelmError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
