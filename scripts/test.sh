#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the system packages
# the tests use, builds every binary (tests run our plugins as real processes,
# the way a container runtime does) and runs the whole suite, root-only tests
# included.
#
# Usage: ./scripts/test.sh [nextest args]   (as root, or as a sudo user: it
# re-runs itself through sudo keeping the caller's PATH, CARGO_HOME and
# RUSTUP_HOME, so cargo and cargo-nextest are found)
#
# The build is the demo's (scripts/lib.sh build_bins: dev profile, every
# binary), so running the demo first leaves only the test targets to build.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
as_root "$0" "$@"
started=$SECONDS
step "Debian packages (scripts/deps.sh)"
timed "packages" ./scripts/deps.sh
step "build: cargo build --workspace --bins (dev profile)"
timed "build" build_bins
step "tests: cargo nextest run --workspace (builds the test targets first)"
if [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ]; then
    # Test targets built as the checkout's owner (see cargo_as_owner);
    # nextest, as root, then finds them fresh and only runs them.
    timed "test build" cargo_as_owner test --locked --workspace --no-run
fi
# The image the DaemonSet tests run (static binaries, fast profile): built
# here so its compile time is not charged to one test's timeout.
step "test image: scripts/build-image.sh --profile image-test"
timed "test image" ./scripts/build-image.sh --profile image-test >/dev/null
rc=0
timed "tests" "$(find_cargo)" nextest run --locked --workspace --no-fail-fast "$@" || rc=$?
printf '%s(scripts/test.sh: %ss in all, exit %s)%s\n' "$C_DIM" "$((SECONDS - started))" "$rc" "$C_OFF"
exit "$rc"
