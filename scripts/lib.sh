# Shared by the demo scripts (sourced, not run).

# Prints the path of cargo. Under sudo, root's PATH usually lacks the invoking
# user's toolchain, so look in that user's ~/.cargo/bin too.
find_cargo() {
    if command -v cargo >/dev/null; then
        command -v cargo
    elif [ -n "${SUDO_USER:-}" ] && [ -x "$(eval echo "~$SUDO_USER")/.cargo/bin/cargo" ]; then
        echo "$(eval echo "~$SUDO_USER")/.cargo/bin/cargo"
    else
        echo "cargo not found: install Rust (https://rustup.rs) or point the demo at prebuilt binaries" >&2
        exit 1
    fi
}

# Builds, once, every binary either demo part runs (release profile) and
# prints the directory they are in.
build_demo_bins() {
    "$(find_cargo)" build --release -q -p plexus -p plexus-host-device -p plexus-static \
        -p plexus-vnic -p plexus-agent -p plexus-testkit --bins >&2 || return 1
    echo "$REPO/target/release"
}
