"""Every image a deployment runs, for mirroring into a site registry: build/<env>/images.txt.

The list is read from what render wrote, so it cannot drift from what is deployed:

- ``cluster``: the add-on manifests (build/<env>/manifests). The HelmCharts pin their images in
  their values (plugins/filter/cluster_addons.py), so those count too.
- ``platform``: the platform and services objects (build/<env>/platform), built by
  tools/build_images.py (images.yml); pushed from the build's archives, not pulled upstream.
- ``k3s``: K3s's own images, from the release's k3s-images.txt in the air-gap bundle, less those
  of the components ``k3s_disable`` turns off.

``object_images(obj)`` finds every reference in one object: each ``image:`` string, each
``{repository, tag}`` pair (chart values), inside HelmChart values and ConfigMap data too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

# The render folders and the layer each one is.
LAYERS = {"manifests": "cluster", "platform": "platform"}
# K3s's packaged components and the images only they use.
COMPONENT_IMAGES = {
    "traefik": ("rancher/mirrored-library-traefik",),
    "servicelb": ("rancher/klipper-lb",),
    "local-storage": ("rancher/local-path-provisioner", "rancher/mirrored-library-busybox"),
    "metrics-server": ("rancher/mirrored-metrics-server",),
}
RELEASES = "https://github.com/k3s-io/k3s/releases/download"


def normalize(ref: str) -> str:
    """A reference with its registry spelled out, as containerd pulls it (docker.io/library/...)."""
    ref = ref.strip()
    first = ref.split("/", 1)[0]
    if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
        ref = f"docker.io/{ref if '/' in ref else 'library/' + ref}"
    return ref


def _embedded(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def object_images(obj: Any) -> set[str]:
    """Every image reference in one object, however deep."""
    found: set[str] = set()
    if isinstance(obj, dict):
        repository, tag = obj.get("repository"), obj.get("tag")
        if isinstance(repository, str) and isinstance(tag, str) and repository and tag:
            found.add(normalize(f"{repository}:{tag}"))
        for key, value in obj.items():
            if key == "image" and isinstance(value, str) and value:
                found.add(normalize(value))
            elif key == "valuesContent" and isinstance(value, str):
                found |= object_images(_embedded(value))
            elif isinstance(value, str) and "image:" in value:
                # ConfigMap data holding a pod template (e.g. a KubernetesExecutor's).
                found |= object_images(_embedded(value))
            else:
                found |= object_images(value)
    elif isinstance(obj, list):
        for item in obj:
            found |= object_images(item)
    return found


def rendered_images(render_dir: str) -> dict[str, set[str]]:
    """Reference -> layers, from every rendered YAML document under render_dir."""
    images: dict[str, set[str]] = {}
    root = Path(render_dir)
    for folder, layer in LAYERS.items():
        for path in sorted((root / folder).glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                for ref in object_images(document):
                    images.setdefault(ref, set()).add(layer)
    return images


def k3s_images(lines: Iterable[str], disabled: Iterable[str] = ()) -> list[str]:
    """The lines of k3s-images.txt, less the images of disabled components."""
    dropped = tuple(name for component in disabled for name in COMPONENT_IMAGES.get(str(component), ()))
    refs = [normalize(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [ref for ref in refs if not any(re.search(rf"/{re.escape(name)}:", ref) for name in dropped)]


def image_list(render_dir: str, airgap_dir: str = "", k3s_version: str = "", disabled: Iterable[str] = (), environment: str = "") -> str:
    """build/<env>/images.txt: comment lines, then "<reference> <layer[,layer]>" sorted."""
    images = rendered_images(render_dir)
    listing = Path(airgap_dir) / "k3s-images.txt" if airgap_dir else None
    header = [
        f"# Every image the {environment or 'rendered'} deployment runs, '<reference> <layer>' a line (docs/cluster.md, Mirroring).",
        "# Written by playbooks/render.yml from the rendered objects; cluster = add-ons, platform = built by make images.",
    ]
    if listing is not None and listing.is_file():
        for ref in k3s_images(listing.read_text().splitlines(), disabled):
            images.setdefault(ref, set()).add("k3s")
        header.append(f"# k3s: {listing} (the release's list), less the images of k3s_disable.")
    else:
        version = k3s_version.replace("+", "%2B")
        header.append(
            f"# k3s: not listed: the air-gap bundle has no k3s-images.txt. Add the lines of {RELEASES}/{version}/k3s-images.txt"
            " (or put that file in the bundle and render again)."
        )
    body = [f"{ref} {','.join(sorted(layers))}" for ref, layers in sorted(images.items())]
    return "\n".join(header + body) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_image_list": image_list}
