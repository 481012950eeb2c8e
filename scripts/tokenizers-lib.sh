#!/usr/bin/env bash
# Builds libtokenizers.a, the Rust static library that
# github.com/daulet/tokenizers links against, from the Rust sources shipped
# inside that Go module, and installs it as .lib/libtokenizers.a in the
# repository root (package tokenizer links it with -L${SRCDIR}/../.lib).
#
# The build (cargo, about a minute and a half) happens once per content of the
# sources: the result is cached in
# ${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/libtokenizers/<sha256 of the sources>/
# and later runs only relink it, which takes milliseconds.
set -euo pipefail

module="github.com/daulet/tokenizers"
version="v1.22.1"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/libtokenizers"
dest="$root/.lib/libtokenizers.a"

# Locate the module's sources; `go mod download` fetches them on a fresh machine.
dir=$(cd "$root" && go mod download -json "$module@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z "$dir" || ! -f "$dir/Cargo.toml" ]]; then
	echo "tokenizers-lib: cannot find the Rust sources of $module@$version (go mod download -json gave dir '$dir')" >&2
	exit 1
fi

# The cache key covers every file cargo reads, the target machine and the
# module version, so a change to any of them builds a new library.
sources=(Cargo.toml Cargo.lock src benches)
key=$(
	cd "$dir"
	{
		echo "$module@$version $(uname -s)-$(uname -m)"
		find "${sources[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
	} | sha256sum | cut -c1-32
)
lib="$cache/$key/libtokenizers.a"

install_lib() {
	mkdir -p "$(dirname "$dest")"
	if [[ "$(stat -c %d:%i "$lib")" == "$(stat -c %d:%i "$dest" 2>/dev/null || true)" ]]; then
		return
	fi
	# A hard link costs no space; fall back to a copy across file systems.
	# Either way go through a temporary name so the swap is atomic.
	ln -f "$lib" "$dest.tmp" 2>/dev/null || cp "$lib" "$dest.tmp"
	mv -f "$dest.tmp" "$dest"
}

if [[ -s "$lib" ]]; then
	install_lib
	echo "tokenizers-lib: up to date ($lib)"
	exit 0
fi

command -v cargo >/dev/null || {
	echo "tokenizers-lib: cargo is needed to build libtokenizers.a once (install Rust from https://rustup.rs)" >&2
	exit 1
}

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
for s in "${sources[@]}"; do
	cp -R "$dir/$s" "$build/"
done
chmod -R u+w "$build" # the module cache is read-only

echo "tokenizers-lib: building libtokenizers.a for $module@$version with cargo (once, about 2 minutes)"
(cd "$build" && cargo build --release --lib --locked --target-dir "$build/target")

mkdir -p "$cache/$key"
cp "$build/target/release/libtokenizers.a" "$cache/$key/.libtokenizers.a.tmp"
mv -f "$cache/$key/.libtokenizers.a.tmp" "$lib"
install_lib
echo "tokenizers-lib: built $lib"
