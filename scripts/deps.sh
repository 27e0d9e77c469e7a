# shellcheck shell=bash
# scripts/deps.sh - the Debian 12 packages heaptap needs, installed only when
# missing. Sourced by scripts/test.sh, scripts/demo.sh and .ci/run.

HEAPTAP_PACKAGES=(
	build-essential cmake pkg-config        # toolchain
	libunwind-dev                           # stacks (frame pointers or DWARF CFI)
	uthash-dev                              # the flusher's hash tables
	zlib1g-dev                              # gzip of the profiles
	libdw-dev libelf-dev                    # symbol names, file:line, build IDs
	libcmocka-dev                           # unit tests
	protobuf-compiler golang-github-google-pprof-dev  # protoc + profile.proto (test oracle)
	golang-go                               # go tool pprof (reading profiles, test oracle)
	python3 procps                          # integration tests, demo
	chromium                                # headless browser: the heaptap report page test
)

ht_missing_packages() {
	local p
	for p in "${HEAPTAP_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			printf '%s\n' "$p"
		fi
	done
}

ht_install_deps() {
	local missing sudo=()
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "heaptap: not a Debian system (no dpkg-query); install the equivalents of: ${HEAPTAP_PACKAGES[*]}" >&2
		return 0
	fi
	mapfile -t missing < <(ht_missing_packages)
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			echo "heaptap: missing packages (${missing[*]}) and not root, no sudo" >&2
			return 1
		fi
	fi
	echo "heaptap: installing ${missing[*]}" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}"
}

# ht_build BUILD_DIR: configure (once) and build.
ht_build() {
	local build=$1
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build "$build" -j2
}
