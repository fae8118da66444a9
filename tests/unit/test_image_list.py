"""images.txt: every image of the rendered objects plus K3s's list (plugins/filter/image_list.py)."""

from __future__ import annotations

import cluster_addons as ca
import image_list
import yaml
from test_cluster_addons import PLAN, SETTINGS

POD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "spec": {
        "template": {
            "spec": {"initContainers": [{"image": "busybox:1.36"}], "containers": [{"image": "registry.local/mlops/api:0.1.0-abc"}]}
        }
    },
}
CONFIGMAP = {
    "kind": "ConfigMap",
    "data": {"pod_template.yaml": "spec:\n  containers:\n    - image: quay.io/x/worker:1\n", "other": "no images here"},
}


def test_object_images_finds_every_form():
    assert image_list.object_images(POD) == {"docker.io/library/busybox:1.36", "registry.local/mlops/api:0.1.0-abc"}
    assert image_list.object_images(CONFIGMAP) == {"quay.io/x/worker:1"}
    chart = ca.csi_nfs(SETTINGS)[0]
    assert "registry.k8s.io/sig-storage/csi-provisioner:v5.2.0" in image_list.object_images(chart)


def test_normalize_spells_out_the_registry():
    assert image_list.normalize("rancher/mirrored-pause:3.6") == "docker.io/rancher/mirrored-pause:3.6"
    assert image_list.normalize("localhost/x:1") == "localhost/x:1"
    assert image_list.normalize("registry.local:5000/a/b:1") == "registry.local:5000/a/b:1"


def test_k3s_list_drops_the_disabled_components():
    lines = [
        "docker.io/rancher/klipper-helm:v0.9.4-build20250113",
        "docker.io/rancher/klipper-lb:v0.4.13",
        "docker.io/rancher/local-path-provisioner:v0.0.31",
        "docker.io/rancher/mirrored-coredns-coredns:1.12.0",
        "docker.io/rancher/mirrored-library-busybox:1.36.1",
        "docker.io/rancher/mirrored-library-traefik:3.3.2",
        "docker.io/rancher/mirrored-metrics-server:v0.7.2",
        "docker.io/rancher/mirrored-pause:3.6",
        "",
    ]
    kept = image_list.k3s_images(lines, ["servicelb", "local-storage", "traefik"])
    assert kept == [
        "docker.io/rancher/klipper-helm:v0.9.4-build20250113",
        "docker.io/rancher/mirrored-coredns-coredns:1.12.0",
        "docker.io/rancher/mirrored-metrics-server:v0.7.2",
        "docker.io/rancher/mirrored-pause:3.6",
    ]


def test_every_rendered_image_is_listed_with_its_layer(tmp_path):
    """Derived from the files, so an image added to any object is listed; the add-ons' HelmCharts
    count through their pinned values."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "platform").mkdir()
    addons = ca.cluster_addons(PLAN, SETTINGS)
    for name, objects in addons.items():
        (tmp_path / "manifests" / name).write_text(ca.to_manifest(objects))
    (tmp_path / "platform" / "70-api.yaml").write_text(yaml.safe_dump_all([POD, CONFIGMAP]))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "k3s-images.txt").write_text("docker.io/rancher/mirrored-pause:3.6\ndocker.io/rancher/klipper-lb:v0.4.13\n")
    text = image_list.image_list(str(tmp_path), str(bundle), "v1.34.9+k3s1", ["servicelb"], "prod")
    rows = dict(line.split(" ") for line in text.splitlines() if not line.startswith("#"))
    assert list(rows) == sorted(rows)
    assert rows["quay.io/metallb/controller:v0.15.2"] == "cluster"
    assert rows["registry.k8s.io/sig-storage/nfsplugin:v4.11.0"] == "cluster"
    assert rows["registry.local/mlops/api:0.1.0-abc"] == "platform"
    assert rows["quay.io/x/worker:1"] == "platform"
    assert rows["docker.io/rancher/mirrored-pause:3.6"] == "k3s"
    assert "docker.io/rancher/klipper-lb:v0.4.13" not in rows
    everything = set()
    for path in tmp_path.glob("*/*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            everything |= image_list.object_images(document)
    assert everything <= set(rows)


def test_without_the_release_list_the_file_says_where_it_is(tmp_path):
    text = image_list.image_list(str(tmp_path), "", "v1.34.9+k3s1", [], "dev")
    assert "https://github.com/k3s-io/k3s/releases/download/v1.34.9%2Bk3s1/k3s-images.txt" in text
    assert [line for line in text.splitlines() if not line.startswith("#")] == []
