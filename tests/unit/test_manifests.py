"""deploy/: the install bundle is up to date, RBAC is least-privilege, the pod is locked down."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests import hack_scripts

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "base"
RBAC = BASE / "rbac.yaml"
INSTALL = REPO / "deploy" / "install.yaml"


def gen_install() -> ModuleType:
    return hack_scripts.load("gen_install")


def install_objects() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in install_objects() if o["kind"] == kind]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


# --- (a) the bundle ---------------------------------------------------------


def test_install_yaml_is_generated_from_base() -> None:
    assert INSTALL.read_text() == gen_install().render(BASE), (
        "deploy/install.yaml is out of date: run `make manifests`"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_generator_agrees_with_kustomize() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    theirs = {key(o): o for o in yaml.safe_load_all(rendered) if o}
    ours = {key(o): o for o in install_objects()}
    assert ours == theirs


def test_bundle_contents() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in install_objects()}
    for expected in [
        ("CustomResourceDefinition", "imagestreams.image.headwater.dev"),
        ("CustomResourceDefinition", "buildconfigs.build.headwater.dev"),
        ("CustomResourceDefinition", "builds.build.headwater.dev"),
        ("Namespace", "headwater-system"),
        ("ServiceAccount", "headwater-operator"),
        ("ClusterRole", "headwater-operator"),
        ("Role", "headwater-leader-election"),
        ("ClusterRole", "headwater-edit"),
        ("ClusterRole", "headwater-view"),
        ("ConfigMap", "headwater-config"),
        ("Deployment", "headwater-operator"),
        ("PodDisruptionBudget", "headwater-operator"),
        ("Service", "headwater-operator-metrics"),
        ("Service", "headwater-webhooks"),
        ("NetworkPolicy", "headwater-operator"),
    ]:
        assert expected in kinds
    # kubectl apply -f creates in file order: the namespace before what lives in it.
    order = [o["kind"] for o in install_objects()]
    assert order.index("Namespace") < order.index("ServiceAccount")
    for obj in install_objects():
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition") and not obj[
            "kind"
        ].startswith("Cluster"):
            assert obj["metadata"]["namespace"] == "headwater-system", key(obj)


def test_images_entry_is_applied() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    [entry] = kustomization["images"]
    [deployment] = by_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{entry['newName']}:{entry['newTag']}"


def test_image_name_parsing() -> None:
    gen = gen_install()
    assert gen.image_name("headwater-operator") == "headwater-operator"
    assert gen.image_name("localhost:5000/a/b:1@sha256:00") == "localhost:5000/a/b"
    assert gen.set_image("x:1", {"name": "x", "digest": "sha256:ab"}) == "x@sha256:ab"
    assert gen.set_image("x:1", {"name": "x", "newName": "r/y"}) == "r/y:1"


def test_configmap_config_file_loads() -> None:
    from headwater.config import config_from_mapping, parse_yaml

    [configmap] = by_kind("ConfigMap")
    config = config_from_mapping(parse_yaml(configmap["data"]["config.yaml"], "cm"), "cm")
    assert config.import_interval_seconds == 900
    # Imports: any public registry, nothing internal, nothing insecure (issue 12).
    assert config.allowed_registries_for_import == ()
    assert config.service_cidrs == ("10.96.0.0/12",)
    assert config.pod_cidrs == ("10.244.0.0/16",)


# --- (b) RBAC ---------------------------------------------------------------


def rbac_roles() -> list[dict[str, Any]]:
    return [o for o in install_objects() if o["kind"] in ("ClusterRole", "Role")]


def test_no_wildcards() -> None:
    for role in rbac_roles():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert all("*" not in item for item in rule.get(field, [])), (role, rule)


def test_every_rule_has_a_comment() -> None:
    lines = RBAC.read_text().splitlines()
    rule_starts = [i for i, line in enumerate(lines) if re.match(r"^- apiGroups:", line)]
    assert rule_starts
    for index in rule_starts:
        assert lines[index - 1].lstrip().startswith("#"), f"rbac.yaml:{index + 1} has no comment"


def test_aggregated_roles_do_not_write_status() -> None:
    aggregated = [
        r
        for r in rbac_roles()
        if any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"].get(
            "labels", {}))
    ]  # fmt: skip
    assert {r["metadata"]["name"] for r in aggregated} == {
        "headwater-edit",
        "headwater-view",
        "headwater-build-strategies",
        "headwater-build-strategy-custom",
    }
    for role in aggregated:
        for rule in role["rules"]:
            assert not any(res.endswith("/status") for res in rule["resources"]), rule


def test_aggregation_labels_and_verbs() -> None:
    roles = {r["metadata"]["name"]: r for r in rbac_roles()}
    view_labels = roles["headwater-view"]["metadata"]["labels"]
    edit_labels = roles["headwater-edit"]["metadata"]["labels"]
    assert view_labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    for rule in roles["headwater-view"]["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}
    edit_resources = {res for rule in roles["headwater-edit"]["rules"] for res in rule["resources"]}
    assert {"imagestreams", "buildconfigs", "builds"} <= edit_resources


def test_docker_and_source_strategies_go_to_edit_and_custom_to_admin_only() -> None:
    roles = {r["metadata"]["name"]: r for r in rbac_roles()}

    def aggregated_to(name: str) -> set[str]:
        labels = roles[name]["metadata"]["labels"]
        prefix = "rbac.authorization.k8s.io/aggregate-to-"
        return {k[len(prefix) :] for k, v in labels.items() if k.startswith(prefix) and v == "true"}

    def strategies(name: str) -> set[str]:
        return {
            res
            for rule in roles[name]["rules"]
            if "create" in rule["verbs"] and "build.headwater.dev" in rule["apiGroups"]
            for res in rule["resources"]
            if res.startswith("builds/") and res != "builds/status"
        }

    assert aggregated_to("headwater-build-strategies") == {"edit", "admin"}
    assert strategies("headwater-build-strategies") == {"builds/docker", "builds/source"}
    assert aggregated_to("headwater-build-strategy-custom") == {"admin"}
    assert strategies("headwater-build-strategy-custom") == {"builds/custom"}
    # No other role a user may hold through aggregation carries a strategy.
    for name in ("headwater-view", "headwater-edit"):
        assert not strategies(name), name
    # The operator creates Builds for start requests and triggers: it holds all three.
    assert strategies("headwater-operator") == {"builds/docker", "builds/source", "builds/custom"}
    # The image roles an admin binds to another namespace's build service account.
    for name, verbs in (
        ("headwater-image-puller", {"get"}),
        ("headwater-image-pusher", {"get", "update"}),
    ):
        (rule,) = roles[name]["rules"]
        assert rule["resources"] == ["imagestreams/layers"]
        assert set(rule["verbs"]) == verbs
        assert not aggregated_to(name)


def test_operator_never_creates_crds_and_leases_are_namespaced() -> None:
    roles = {(r["kind"], r["metadata"]["name"]): r for r in rbac_roles()}
    operator = roles[("ClusterRole", "headwater-operator")]
    for rule in operator["rules"]:
        if "customresourcedefinitions" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "leases" not in rule["resources"], "leases belong in the namespaced Role"
    lease_role = roles[("Role", "headwater-leader-election")]
    assert lease_role["metadata"]["namespace"] == "headwater-system"


OPERATOR_SA = {
    "kind": "ServiceAccount",
    "name": "headwater-operator",
    "namespace": "headwater-system",
}
WEBHOOK_CONFIGURATIONS = {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}


def cluster_wide_operator_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules the operator's service account holds in every namespace (ClusterRoleBindings)."""
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    rules: list[dict[str, Any]] = []
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        if OPERATOR_SA in binding["subjects"]:
            rules.extend(roles[binding["roleRef"]["name"]]["rules"])
    return rules


def test_no_cluster_wide_list_or_watch_of_secrets_or_configmaps() -> None:
    rules = cluster_wide_operator_rules(install_objects())
    assert rules
    for rule in rules:
        if {"secrets", "configmaps"} & set(rule["resources"]):
            assert set(rule["verbs"]) == {"get"}, rule
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets, "the operator reads the Secrets objects name (pull, push, webhook)"
    assert not [r for r in rules if "configmaps" in r["resources"]], "ConfigMaps are never read"


def test_webhook_configuration_rights_are_limited_to_headwater_dev() -> None:
    rules = [
        r for r in cluster_wide_operator_rules(install_objects())
        if WEBHOOK_CONFIGURATIONS & set(r["resources"])
    ]  # fmt: skip
    assert rules
    for rule in rules:
        if rule.get("resourceNames"):
            assert rule["resourceNames"] == ["headwater.dev"]
            assert "create" not in rule["verbs"]  # RBAC would never match it
        else:
            # kopf creates the configuration when absent; RBAC cannot name a create.
            assert rule["verbs"] == ["create"], rule
    named = {v for r in rules if r.get("resourceNames") for v in r["verbs"]}
    assert "patch" in named
    assert not {"list", "watch", "update", "delete", "deletecollection"} & named


def test_admission_policy_limits_the_unnamed_create_to_headwater_dev() -> None:
    [policy] = by_kind("ValidatingAdmissionPolicy")
    [binding] = by_kind("ValidatingAdmissionPolicyBinding")
    # (kustomize gives these cluster-scoped kinds a namespace, as its schema does not
    # know them; the API server drops it, as the e2e install shows.)
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = policy["spec"]
    [rule] = spec["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == WEBHOOK_CONFIGURATIONS
    assert "CREATE" in rule["operations"]
    [condition] = spec["matchConditions"]
    account = "system:serviceaccount:{namespace}:{name}".format(**OPERATOR_SA)
    assert condition["expression"] == f'request.userInfo.username == "{account}"'
    [validation] = spec["validations"]
    assert validation["expression"] == 'object.metadata.name == "headwater.dev"'


def test_operator_lists_no_namespaces_and_reads_service_accounts_by_name() -> None:
    for rule in cluster_wide_operator_rules(install_objects()):
        # kopf lists namespaces only when namespaced; builds read one namespace's
        # privileged-builds label by name.
        if "namespaces" in rule["resources"]:
            assert rule["verbs"] == ["get"], "namespaces are read by name, never listed"
        if "serviceaccounts" in rule["resources"]:
            assert rule["verbs"] == ["get"]


def test_cluster_wide_verbs_are_documented() -> None:
    """docs/operations.md's table names every resource the operator holds cluster-wide."""
    text = (REPO / "docs" / "operations.md").read_text()
    table = text[text.index("## What the operator may do") :]
    for rule in cluster_wide_operator_rules(install_objects()):
        for resource in rule["resources"]:
            assert f"`{resource}`" in table, f"{resource} is missing from docs/operations.md"


# --- (c) the network policy -------------------------------------------------


def test_network_policy_lets_in_only_what_needs_in() -> None:
    [policy] = by_kind("NetworkPolicy")
    [deployment] = by_kind("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == "headwater-system"
    selector = spec["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the policy must select the operator pod"
    assert spec["policyTypes"] == ["Ingress"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    opened: dict[int, list[Any]] = {}
    for rule in spec["ingress"]:
        assert rule["ports"], "every rule names its ports"
        for port in rule["ports"]:
            number = ports[port["port"]] if isinstance(port["port"], str) else port["port"]
            assert port.get("protocol", "TCP") == "TCP"
            opened.setdefault(number, []).append(rule.get("from"))
    # Admission (API server) and webhooks (Git hosts, registries): from anywhere.
    assert opened[9443] == [None]
    assert opened[8082] == [None]
    # Metrics: from pods in any namespace, not from outside the cluster.
    assert opened[8080] == [[{"namespaceSelector": {}}]]
    # Health: nothing but the node's kubelet, which no policy blocks.
    assert set(opened) == {9443, 8082, 8080}


# --- (d) the Deployment -----------------------------------------------------


def test_deployment_is_locked_down() -> None:
    [deployment] = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "headwater-operator"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"] + pod.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["runAsNonRoot"] is True
        assert sc.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert "privileged" not in sc or sc["privileged"] is False
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]


def test_deployment_runs_the_operator() -> None:
    [deployment] = by_kind("Deployment")
    assert deployment["spec"]["replicas"] == 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["operator", "run", "--all-namespaces", "--log-format", "json"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhooks": 8082, "admission": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    assert env["HEADWATER_CONFIG_FILE"]["value"] == "/etc/headwater/config.yaml"


def test_two_replicas_on_different_nodes_when_they_can_and_one_kept_through_a_drain() -> None:
    [deployment] = by_kind("Deployment")
    selector = deployment["spec"]["selector"]
    assert deployment["spec"]["replicas"] == 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    # Preferred only: a one-node cluster still runs both.
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    [term] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"] == selector
    [budget] = by_kind("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"] == {"minAvailable": 1, "selector": selector}


def render_install() -> ModuleType:
    return hack_scripts.load("render_install")


def test_render_install_changes_only_image_and_config() -> None:
    render = render_install()
    original = render.load()
    rendered = render.render(
        original,
        image="10.0.0.1:5000/headwater/operator@sha256:" + "a" * 64,
        registry="10.0.0.1:5000",
        insecure=True,
        builder_image="10.0.0.1:5000/headwater/builder:1",
        kaniko_image="10.0.0.1:5000/headwater/kaniko:1",
    )
    assert len(rendered) == len(original)
    changed = [
        (a["kind"], a["metadata"]["name"])
        for a, b in zip(original, rendered, strict=True)
        if a != b
    ]
    assert changed == [("ConfigMap", "headwater-config"), ("Deployment", "headwater-operator")]
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("a" * 64)
    config_map = next(d for d in rendered if d["kind"] == "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["registry"] == "10.0.0.1:5000"
    assert config["registryInsecure"] is True
    assert config["builderImage"] == "10.0.0.1:5000/headwater/builder:1"
    assert config["kanikoImage"] == "10.0.0.1:5000/headwater/kaniko:1"
    assert config["buildExecutor"] == "kaniko"  # the bundle's default, kept
    assert config["leaderElection"]["enabled"] is True  # the rest is kept


def test_render_install_rejects_a_bundle_without_the_operator() -> None:
    render = render_install()
    without = [d for d in render.load() if d["kind"] != "Deployment"]
    with pytest.raises(render.RenderError, match="Deployment headwater-operator"):
        render.render(without, image="x")


def test_render_install_cluster_scoped_is_what_make_run_applies() -> None:
    """`make run` applies these: the cluster-scoped objects, none of the operator's namespace."""
    render = render_install()
    docs = render.load()
    chosen = render.cluster_scoped(docs)
    kinds = {d["kind"] for d in chosen}
    assert {"CustomResourceDefinition", "Namespace", "ClusterRole"} <= kinds
    assert "headwater-view" in {d["metadata"]["name"] for d in chosen if d["kind"] == "ClusterRole"}
    assert all("namespace" not in d["metadata"] for d in chosen)
    left_out = [d for d in docs if d not in chosen]
    # Everything left out lives in a namespace (the operator's Deployment, its ConfigMap...).
    assert left_out
    assert all(d["metadata"].get("namespace") for d in left_out)


def test_benches_apply_the_cluster_scoped_part_first(tmp_path: Path) -> None:
    """A bench on a cluster fresh from `make cluster-up` finds the CRDs, the operator's
    namespace and the cluster roles (bench/_common.py), applied server-side (idempotent)."""
    from bench._common import install_cluster_scoped

    calls = tmp_path / "calls"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncat >> {calls}.stdin\n')
    kubectl.chmod(0o755)
    install_cluster_scoped({"KUBECTL": str(kubectl), "KUBECONFIG": "/nonexistent"})
    apply, wait = calls.read_text().splitlines()
    assert apply == "--kubeconfig /nonexistent apply --server-side --force-conflicts -f -"
    applied = [d for d in yaml.safe_load_all((tmp_path / "calls.stdin").read_text()) if d]
    kinds = {d["kind"] for d in applied}
    assert {"CustomResourceDefinition", "Namespace", "ClusterRole"} <= kinds
    assert "Deployment" not in kinds
    assert wait.startswith("--kubeconfig /nonexistent wait --for=condition=Established")
    for crd in ("imagestreams.image.headwater.dev", "builds.build.headwater.dev"):
        assert f"crd/{crd}" in wait
