#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the system packages
# the tests use, builds every binary (tests run our plugins as real processes,
# the way a container runtime does) and runs the whole suite, root-only tests
# included. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the suite includes network-namespace tests and must run as root" >&2
  exit 1
fi
./scripts/deps.sh
cargo build --workspace --bins
# The image the DaemonSet tests run (static binaries, fast profile): built
# here so its compile time is not charged to one test's timeout.
./scripts/build-image.sh --profile image-test >/dev/null
cargo nextest run --workspace --no-fail-fast "$@"
