#!/usr/bin/env bash
# Build the helm client that test/test_helm_chart.py renders the chart with: helm.sh/helm/v3/cmd/helm
# at a pinned version, from the Go module proxy with `go install`, into a cache outside the work
# tree (kept between runs; a second call only prints the path). Prints the binary's path.
#
#   tools/build_helm.sh            -> /root/.cache/kubernetes-ec2-autoscaler/helm-v3.18.6/helm
#
# Needs Go (any version the module builds with). To bump, change HELM_VERSION and run the tests.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.18.6}"  # with k8s.io/client-go v0.33 (HELM_KUBE_MINOR below)
CACHE="${AUTOSCALER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-ec2-autoscaler}"
BIN_DIR="$CACHE/helm-$HELM_VERSION"
if [[ ! -x "$BIN_DIR/helm" ]]; then
    command -v go >/dev/null || { echo "error: building helm needs Go (https://go.dev/doc/install)" >&2; exit 1; }
    mkdir -p "$BIN_DIR"
    # -trimpath: the same bytes wherever it is built. The version, and the Kubernetes version
    # `helm template` assumes (1 + client-go's minor, 0.33 -> 1.33), baked in as helm's Makefile does.
    KUBE_MAJOR=1 KUBE_MINOR="${HELM_KUBE_MINOR:-33}"
    LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        LDFLAGS+=" -X $package.k8sVersionMajor=$KUBE_MAJOR -X $package.k8sVersionMinor=$KUBE_MINOR"
    done
    GOBIN="$BIN_DIR.tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "$LDFLAGS" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mv "$BIN_DIR.tmp/helm" "$BIN_DIR/helm"
    rmdir "$BIN_DIR.tmp"
fi
echo "$BIN_DIR/helm"
