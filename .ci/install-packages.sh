#!/usr/bin/env bash
# Installs the Debian packages the e2e suites use, idempotently (nothing happens when every binary exists):
#   docker-registry  CNCF Distribution 2.8, the real upstream registry (test/support/upstream-registry.ts)
#   skopeo, podman   real registry clients pulling through the app
#   containerd       containerd and ctr, a real mirror client (test/mirror-clients.e2e-spec.ts starts its own daemon)
#   curl             plain HTTP requests of the mirror-clients suite
#   apache2-utils    htpasswd -B, the bcrypt htpasswd file of the basic-auth upstream
#   openssl          the token server's signing certificate (test/support/token-server.ts)
#   nginx-light      the nginx front with BLOB_OFFLOAD=x-accel (test/blob-offload-nginx.e2e-spec.ts)
#   chromium         headless browser loading Swagger UI (test/openapi.e2e-spec.ts, via playwright-core)
set -euo pipefail

declare -A package_of=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [podman]=podman
  [containerd]=containerd
  [ctr]=containerd
  [curl]=curl
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [chromium]=chromium
  [nginx]=nginx-light
)

missing=()
for binary in "${!package_of[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${package_of[$binary]}")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-packages: docker-registry skopeo podman containerd curl htpasswd openssl chromium nginx already installed"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi

echo "install-packages: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-packages: done"
