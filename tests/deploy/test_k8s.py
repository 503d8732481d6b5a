"""deploy/k8s/ checked without a cluster: the kustomization builds, every object it builds is
valid against the Kubernetes API's schema at the apiVersion it names (kubernetes-validate's
bundled schemas, strict: no unknown fields), and the objects agree with each other and with
the server (probes on endpoints it has, selectors that select, the volume read-only)."""

import os
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.factories import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found:
        return found
    message = "kubectl missing: install Debian's kubernetes-client (.ci/run does)"
    if os.environ.get("THUNDER_REQUIRE_KUBECTL"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def built() -> dict[str, dict]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in yaml.safe_load_all(done.stdout)
    }


def test_the_set_holds_what_a_served_agent_needs(built):
    assert set(built) == {
        "Namespace/thunder",
        "PersistentVolumeClaim/thunder-home",
        "ConfigMap/thunder-serve",
        "StatefulSet/thunder-serve",
        "Service/thunder-serve",
        "HorizontalPodAutoscaler/thunder-serve",
        "PodDisruptionBudget/thunder-serve",
    }
    assert all(
        doc["metadata"].get("namespace") == "thunder"
        for name, doc in built.items()
        if not name.startswith("Namespace/")
    )


def test_every_object_is_valid_at_its_api_version(built):
    for name, doc in built.items():
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name} ({doc['apiVersion']}): {error.message} at {error.path}")


def test_a_field_the_api_does_not_have_is_caught(built):
    broken = yaml.safe_load(yaml.safe_dump(built["StatefulSet/thunder-serve"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_objects_agree_with_each_other_and_with_the_server(built):
    from thunder_dagster.serving.api.app import create_app
    from thunder_dagster.serving.state import ServerSettings

    deployment = built["StatefulSet/thunder-serve"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    labels = pod["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        built["PodDisruptionBudget/thunder-serve"]["spec"]["selector"]["matchLabels"],
        built["Service/thunder-serve"]["spec"]["selector"],
    ):
        assert selector.items() <= labels.items()
    target = built["HorizontalPodAutoscaler/thunder-serve"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", "thunder-serve")
    app = create_app(ServerSettings(deployments_root=REPO_ROOT / "nowhere", query_db_url=""))
    paths = set(app.openapi()["paths"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez" in paths
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    home = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"] == {"claimName": "thunder-home", "readOnly": True}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["home"]["readOnly"] is True
    config = built["ConfigMap/thunder-serve"]["data"]
    assert config["THUNDER_HOME"] == mounts["home"]["mountPath"]
    # What the server writes lies on its own writable volumes, not on the read-only home.
    writable = {m["mountPath"] for name, m in mounts.items() if name != "home"}
    # The spool (journal and waiting rows) is each pod's own persistent, bounded volume.
    (claim,) = deployment["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool" and "spool" in mounts
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert deployment["spec"]["serviceName"] == built["Service/thunder-serve"]["metadata"]["name"]
    caches = ("THUNDER_SPOOL_DIR", "THUNDER_ENCODER_CACHE", "THUNDER_BASE_CACHE")
    assert {config[name] for name in caches} <= writable
    assert container["image"] == "registry.example.org/thunder-dagster-server:0.1.0"


def test_the_helm_values_run_this_code_location_on_the_same_volume_and_image():
    values = yaml.safe_load((K8S / "dagster-values.yaml").read_text())
    (user,) = values["dagster-user-deployments"]["deployments"]
    module = user["dagsterApiGrpcArgs"][user["dagsterApiGrpcArgs"].index("--module-name") + 1]
    assert module == "thunder_dagster.definitions"
    __import__(module)
    assert user["image"]["repository"] == "registry.example.org/thunder-dagster"
    assert user["volumes"][0]["persistentVolumeClaim"]["claimName"] == "thunder-home"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert user["includeConfigInLaunchedRuns"]["enabled"] is True


def test_the_teacher_reaches_the_model_servers_and_the_dagster_runs(built):
    """The reward model's grades come from the teacher in a Dagster run: the code location,
    whose configuration its runs' pods inherit, reads the Secret the servers read, and the
    documented command names the variables both read."""
    from thunder_dagster import settings

    (container,) = built["StatefulSet/thunder-serve"]["spec"]["template"]["spec"]["containers"]
    served = {s["secretRef"]["name"]: s for s in container["envFrom"] if "secretRef" in s}
    values = yaml.safe_load((K8S / "dagster-values.yaml").read_text())
    (user,) = values["dagster-user-deployments"]["deployments"]
    assert "thunder-teacher" in {secret["name"] for secret in user["envSecrets"]}
    assert served["thunder-teacher"]["secretRef"]["optional"] is True
    assert user["includeConfigInLaunchedRuns"]["enabled"] is True
    guide = (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text()
    command = next(line for line in guide.splitlines() if "secret generic thunder-teacher" in line)
    for variable in (settings.TEACHER_URL, settings.TEACHER_MODEL, settings.TEACHER_API_KEY):
        assert f"--from-literal={variable.name}=" in command


def test_the_dockerfile_copies_what_exists_and_runs_as_its_user():
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
    assert "USER 10001" in lines
    assert any("requirements/encoder.txt" in line for line in lines)
    # The server's target installs requirements/server.txt and nothing of the training side.
    stages = "\n".join(lines).split("\nFROM ")
    (server,) = [stage for stage in stages if stage.startswith("base AS server")]
    assert (
        "requirements/server.txt" in server and "pip install --no-cache-dir --no-deps ." in server
    )
    assert "USER 10001" in server
