#!/bin/bash
# The images of `make images` (scripts/images.sh, issue #14): built from
# this build's binaries with the same script, then opened the way a
# container runtime would (docker-archive: manifest.json, config, layer)
# and checked:
#   - both tags (the project version the manifests use, git describe);
#   - config: non-root user (65532 control, 1337 agent), entrypoint;
#   - the root has no shell and no package database: only what the
#     binaries need;
#   - each binary's --version runs inside the image root, chrooted, as the
#     image's user: every shared library it links is in the image;
#   - the agent image's iptables-restore runs there too (`cinch-agent init`).
# usage: images_test.sh BIN_DIR   (root: chroot; skips without the tools)
set -u
BIN=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (chroot)"; exit 77; }
for t in mmdebstrap umoci skopeo; do
	command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
W=$(mktemp -d /tmp/cinch-images-test.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0
check() {
	local what=$1
	shift
	if "$@"; then echo "ok: $what"; else
		echo "FAIL: $what"
		fail=1
	fi
}
"$CINCH_SRC/scripts/images.sh" --bin "$BIN" --out "$W/out" || { echo "FAIL: images.sh"; exit 1; }
VERSION=$(sed -n 's/^project(cinch VERSION \([0-9.]*\).*/\1/p' "$CINCH_SRC/CMakeLists.txt")

# open NAME: unpack NAME.tar's one layer into $W/NAME/root; sets CONFIG.
open_image() {
	local d=$W/$1
	mkdir -p "$d/root"
	tar -C "$d" -xf "$W/out/$1.tar"
	CONFIG=$d/$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Config"])' "$d/manifest.json")
	local layer
	for layer in $(/usr/bin/python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$d/manifest.json"); do
		tar -C "$d/root" -xf "$d/$layer"
	done
}
cfg() { /usr/bin/python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['config']; print($1)" "$CONFIG"; }
tags() { /usr/bin/python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["RepoTags"]))' "$W/$1/manifest.json"; }
# As a runtime would: own mount and PID namespaces with /proc mounted
# (LeakSanitizer in the check build's binaries needs it), chrooted.
runs_in() {
	mkdir -p "$W/$1/root/proc"
	unshare --mount --pid --fork --mount-proc="$W/$1/root/proc" \
		chroot --userspec="$2" "$W/$1/root" "${@:3}" >/dev/null 2>&1
}
not() { ! "$@"; }
has_tag() { [[ " $(tags "$1") " == *" ghcr.io/cinch-mesh/$1:$2 "* ]]; }

for spec in cinch-control:65532 cinch-agent:1337; do
	name=${spec%:*} uid=${spec#*:}
	open_image "$name"
	check "$name: tagged $VERSION" has_tag "$name" "$VERSION"
	check "$name: tagged $(git -C "$CINCH_SRC" describe --tags --always --dirty)" \
		has_tag "$name" "$(git -C "$CINCH_SRC" describe --tags --always --dirty)"
	check "$name: runs as $uid:$uid" [ "$(cfg "c['User']")" = "$uid:$uid" ]
	check "$name: entrypoint /usr/bin/$name" [ "$(cfg "c['Entrypoint'][0]")" = "/usr/bin/$name" ]
	check "$name: no shell in the image" [ ! -e "$W/$name/root/bin/sh" -a ! -e "$W/$name/root/usr/bin/sh" ]
	check "$name: no package database" [ ! -e "$W/$name/root/var/lib/dpkg" ]
	check "$name: --version runs in the image as $uid" runs_in "$name" "$uid:$uid" "/usr/bin/$name" --version
done
check "cinchctl: --version runs in the control image" runs_in cinch-control 65532:65532 /usr/bin/cinchctl --version
check "cinch-agent image: iptables-restore runs (cinch-agent init)" \
	runs_in cinch-agent 0:0 /usr/sbin/iptables-restore --version
check "cinch-agent image: ip6tables-restore runs" runs_in cinch-agent 0:0 /usr/sbin/ip6tables-restore --version
# The negative: a host binary linking a library the image lacks (curl's
# OpenSSL libcurl.so.4) does not run there, so the --version checks above
# would catch a missing library.
install -m 0755 /usr/bin/curl "$W/cinch-agent/root/tmp/curl"
check "a binary whose library is not in the image does not run there" \
	not runs_in cinch-agent 1337:1337 /tmp/curl --version
exit $fail
