#!/usr/bin/env bash
# Builds the tools `make e2e` runs from their Go modules (pinned in e2e/go/*/go.mod and go.sum) into .tools/bin,
# each only when it is missing or its pin changed. Nothing is downloaded but Go modules from the module proxy.
#   e2e/build-tools.sh            all of them
#   e2e/build-tools.sh etcd kwok  only these
#   e2e/build-tools.sh promtool   promtool, which `make test` runs (not make e2e, so not in `all`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export GOFLAGS="-mod=readonly -buildvcs=false"

kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1"
kube_ldflags+=" -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean"

# build NAME DIR LDFLAGS OUT [-FLAG...] PACKAGE...: go build with e2e/go/DIR's go.mod to OUT (a file, or bin/).
build() {
  local name=$1 dir=$2 ldflags=$3 out=$4; shift 4
  local stamp="$bin/.$name.stamp" want
  want=$(cat "$root/e2e/go/$dir/go.mod" "$root/e2e/go/$dir/go.sum" <(echo "$ldflags" "$@") | sha256sum | cut -c1-16)
  # The stamp says the pin was built; the binary must still be there (a deleted one is built again).
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && ( "$out" == */ || -x "$out" ) ]]; then return 0; fi
  echo "building $name from e2e/go/$dir (the first build takes minutes; Go caches it)" >&2
  local start=$SECONDS
  (cd "$root/e2e/go/$dir" && go build -trimpath -ldflags "$ldflags" -o "$out" "$@")
  echo "$want" > "$stamp"
  echo "built $name in $((SECONDS - start)) s" >&2
}

provider() {
  # The provider's schema and Terraform mapping come from its module, as its own build embeds them.
  local dir="$root/e2e/go/provider" mod=github.com/pulumi/pulumi-kubernetes/provider/v4 src
  src=$(cd "$dir" && go mod download -json "$mod" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  install -m 0644 "$src/cmd/pulumi-resource-kubernetes/schema.json" "$dir/schema.json"
  install -m 0644 "$src/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "$dir/terraform-mapping.json"
  build provider provider "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=4.25.0" \
    "$bin/pulumi-resource-kubernetes" .
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd kubernetes kwok lws pulumi provider)
for t in "${targets[@]}"; do
  case $t in
    etcd) build etcd etcd "-s -w" "$bin/etcd" go.etcd.io/etcd/server/v3 ;;
    kubernetes) build kubernetes kubernetes "$kube_ldflags" "$bin/" k8s.io/kubernetes/cmd/kube-apiserver \
                  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler ;;
    kwok) build kwok kwok "-s -w" "$bin/kwok" sigs.k8s.io/kwok/cmd/kwok ;;
    lws) build lws lws "-s -w" "$bin/lws-controller" sigs.k8s.io/lws/cmd ;;
    pulumi) build pulumi pulumi "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.274.1" \
              "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi ;;
    provider) provider ;;
    # remove_all_sd leaves out the service discoveries promtool's plugins import registers (plugins/plugin_aws.go
    # and the rest @v0.316.0; kubernetes stays, cmd/promtool/main.go imports it): `check rules` needs none of them.
    promtool) build promtool promtool "-s -w -X github.com/prometheus/common/version.Version=3.16.0" \
                "$bin/promtool" -tags=remove_all_sd github.com/prometheus/prometheus/cmd/promtool ;;
    *) echo "unknown tool $t (etcd kubernetes kwok lws pulumi provider promtool)" >&2; exit 2 ;;
  esac
done
