#!/bin/sh
# Re-fetches the web view's two vendored libraries from the npm registry
# into server/internal/web/static/vendor/: marked (Markdown to HTML) and
# DOMPurify (HTML sanitiser). `make web-vendor` runs it with the versions
# pinned in the Makefile; to upgrade, change them there and run it (see
# server/internal/web/doc.go).
#
# It uses `npm pack` (the tarball exactly as published, checked by npm
# against the registry's integrity hash), copies the already minified
# browser builds and the licence files, strips the source map comment (the
# map is not served), and writes VERSIONS: name, version, the tarball's
# integrity and the SHA-256 of each file as vendored. The web package's
# tests check those hashes, so a hand-edited vendored file fails them.
set -eu

MARKED_VERSION=${MARKED_VERSION:?set MARKED_VERSION}
DOMPURIFY_VERSION=${DOMPURIFY_VERSION:?set DOMPURIFY_VERSION}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/server/internal/web/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent "marked@$MARKED_VERSION" "dompurify@$DOMPURIFY_VERSION" >/dev/null
mkdir marked dompurify
tar xzf "marked-$MARKED_VERSION.tgz" -C marked
tar xzf "dompurify-$DOMPURIFY_VERSION.tgz" -C dompurify

mkdir -p "$out"
# marked's UMD build is its minified browser build; it defines window.marked.
grep -v '^//# sourceMappingURL=' marked/package/lib/marked.umd.js >"$out/marked.min.js"
grep -v '^//# sourceMappingURL=' dompurify/package/dist/purify.min.js >"$out/purify.min.js"
cp marked/package/LICENSE "$out/marked.LICENSE"
cp dompurify/package/LICENSE "$out/dompurify.LICENSE"

integrity() { npm view "$1" dist.integrity; }
{
	echo "# Written by scripts/vendor-web.sh (make web-vendor); do not edit."
	echo "# name version npm-integrity file sha256"
	echo "marked $MARKED_VERSION $(integrity "marked@$MARKED_VERSION") marked.min.js $(sha256sum "$out/marked.min.js" | cut -d' ' -f1)"
	echo "dompurify $DOMPURIFY_VERSION $(integrity "dompurify@$DOMPURIFY_VERSION") purify.min.js $(sha256sum "$out/purify.min.js" | cut -d' ' -f1)"
} >"$out/VERSIONS"
echo "vendored marked $MARKED_VERSION and DOMPurify $DOMPURIFY_VERSION into $out"
