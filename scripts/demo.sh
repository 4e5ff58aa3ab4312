#!/usr/bin/env bash
# The README's demo: installs what it needs (idempotently), builds, runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/demo.sh: run as root" >&2; exit 1; }
scripts/setup-host.sh
scripts/install.sh
# The cluster demo (examples/demo): a 3-node cluster, far memory, a live migration, an HTML report.
# Its flags pass through: npm run demo -- --keep. The userfaultfd demo: node dist/examples/uffd-demo.js
exec node dist/examples/demo/index.js "$@"
