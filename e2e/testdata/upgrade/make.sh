#!/bin/sh
# Makes one upgrade fixture: builds COMMIT's rein-server in a temporary
# git worktree, drives it with cmd/rein-upgrade-fixture and writes
# e2e/testdata/upgrade/BACKEND-SHORTHASH.tar.gz. Run from anywhere in the
# repository; FLAGS go to rein-upgrade-fixture (--kill, --postgres).
#
#   e2e/testdata/upgrade/make.sh 4ee004b --kill
#   e2e/testdata/upgrade/make.sh a32bc59^ --postgres
#
# Not run by make test: fixtures are made once, by hand, and committed.
set -eu
commit=$(git rev-parse --short=7 "$1^{commit}")
shift
root=$(git rev-parse --show-toplevel)
backend=sqlite
for f in "$@"; do [ "$f" = --postgres ] && backend=postgres; done
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/wt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/wt" "$commit"
(cd "$tmp/wt/server" && GOFLAGS=-buildvcs=false go build -o "$tmp/rein-server" ./cmd/rein-server)
(cd "$root/e2e" && go build -o "$tmp/gen" ./cmd/rein-upgrade-fixture)
"$tmp/gen" --server "$tmp/rein-server" --commit "$commit" --out "$root/e2e/testdata/upgrade/$backend-$commit.tar.gz" "$@"
echo "wrote e2e/testdata/upgrade/$backend-$commit.tar.gz"
