#!/usr/bin/env bash
# Builds the pinned control plane the real-Kubernetes test tier runs against (kube-apiserver,
# kube-scheduler, kube-controller-manager and etcd, and the same release's kubectl, whose
# kustomize renders deploy/) from Go modules into a cache outside the work tree, and does nothing
# when that cache already holds them.
#
#   tools/build_control_plane.sh          build if missing, print the directory
#   tools/build_control_plane.sh --force  rebuild
#
# The cache directory is $AUTOSCALER_CONTROL_PLANE_DIR if set, otherwise
# ${XDG_CACHE_HOME:-~/.cache}/kubernetes-ec2-autoscaler/control-plane/<kubernetes version>.
# The last line on stdout is always that directory; progress goes to stderr.
set -euo pipefail

# Keep in step with tools/controlplane/go.mod.
KUBERNETES_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubectl etcd)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module_dir="$here/controlplane"
cache_dir="${AUTOSCALER_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernetes-ec2-autoscaler/control-plane/$KUBERNETES_VERSION}"

complete() {
  for binary in "${BINARIES[@]}"; do
    [[ -x "$cache_dir/$binary" ]] || return 1
  done
  [[ "$(cat "$cache_dir/VERSION" 2>/dev/null)" == "$KUBERNETES_VERSION etcd $ETCD_VERSION" ]]
}

if [[ "${1:-}" != "--force" ]] && complete; then
  echo "control plane $KUBERNETES_VERSION: reusing $cache_dir" >&2
  echo "$cache_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build_control_plane: 'go' is not on PATH (Go >= 1.25 is needed)" >&2; exit 1; }

# Build into a scratch directory next to the cache and move it into place at the end, so an
# interrupted build never leaves a half-filled cache that looks complete.
mkdir -p "$(dirname "$cache_dir")"
staging="$(mktemp -d "$cache_dir.partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

major_minor="${KUBERNETES_VERSION#v}"
major="${major_minor%%.*}"
minor="${major_minor#*.}"; minor="${minor%%.*}"
version_flags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $package.gitVersion=$KUBERNETES_VERSION"
  version_flags+=" -X $package.gitMajor=$major -X $package.gitMinor=$minor"
  version_flags+=" -X $package.gitTreeState=clean"
  version_flags+=" -X $package.buildDate=1970-01-01T00:00:00Z"
done

# The module zip carries pkg/generated/openapi for this release; a release whose zip lacks it needs
# k8s.io/kube-openapi's openapi-gen run on a writable copy first, which this script does not do.
(cd "$module_dir" && go mod download k8s.io/kubernetes)
openapi="$(cd "$module_dir" && go list -mod=readonly -m -f '{{.Dir}}' k8s.io/kubernetes)/pkg/generated/openapi/zz_generated.openapi.go"
if [[ ! -f "$openapi" ]]; then
  echo "build_control_plane: $openapi is missing: this release's module needs openapi-gen before it builds" >&2
  exit 1
fi

echo "control plane $KUBERNETES_VERSION: building ${BINARIES[*]} into $cache_dir (cold, with empty Go caches: about 8 minutes on 2 cores)" >&2
start=$(date +%s)
# One go build for all five so the packages they share are compiled once. -trimpath and -s -w
# keep paths out of the binaries and drop the symbol tables, which the tests do not need.
(
  cd "$module_dir"
  CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false" go build \
    -ldflags="-s -w$version_flags" \
    -o "$staging/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl \
    ./etcd
)
seconds=$(( $(date +%s) - start ))
echo "$KUBERNETES_VERSION etcd $ETCD_VERSION" > "$staging/VERSION"

rm -rf "$cache_dir"
mv "$staging" "$cache_dir"
trap - EXIT
echo "control plane $KUBERNETES_VERSION: built in ${seconds}s" >&2
du -sh "$cache_dir"/* >&2
echo "$cache_dir"
