"""The Python Kubernetes client against a cluster: list, create and watch a custom resource.

Usage: custom_resources.py KUBECONFIG NAMESPACE
Prints one line per step; exits non-zero on any failure.
"""

import sys
import threading

from kubernetes import client, config, watch

GROUP, VERSION, PLURAL = "certinext.io", "v1alpha1", "certificates"


def main(kubeconfig: str, namespace: str) -> None:
    config.load_kube_config(config_file=kubeconfig)
    api = client.CustomObjectsApi()

    listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    print(f"listed {len(listed['items'])} at {listed['metadata']['resourceVersion']}")

    seen = []
    ready = threading.Event()

    def watch_certificates() -> None:
        w = watch.Watch()
        stream = w.stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=20,
        )
        ready.set()
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if event["object"]["metadata"]["name"] == "from-python":
                w.stop()

    watcher = threading.Thread(target=watch_certificates)
    watcher.start()
    ready.wait(10)

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Certificate",
        "metadata": {"name": "from-python", "labels": {"client": "python"}},
        "spec": {
            "secretName": "from-python-tls",
            "productRef": {"name": "web-server"},
            "dnsNames": ["python.acme.example"],
        },
    }
    created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    print(f"created {created['metadata']['name']} uid={created['metadata']['uid']}")

    watcher.join(30)
    if ("ADDED", "from-python") not in seen:
        sys.exit(f"the watch did not see the new certificate: {seen}")
    print("watched ADDED from-python")

    selected = api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector="client=python"
    )
    names = [item["metadata"]["name"] for item in selected["items"]]
    if names != ["from-python"]:
        sys.exit(f"label selector returned {names}")
    print("selected from-python")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
