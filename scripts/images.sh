#!/bin/sh
# Builds the OCI images of cinch-control and cinch-agent from Debian
# packages, with no container daemon and nothing downloaded but Debian
# packages (issue #14):
#
#   1. the Debian packages that hold the shared libraries the binaries
#      link (ldd, then dpkg -S on this machine) are the image's only
#      packages, plus iptables for the agent (`cinch-agent init`);
#   2. mmdebstrap --variant=extract unpacks them and their dependencies
#      (no dpkg, no shell, no maintainer scripts) into a root tarball,
#      from the same apt sources this machine uses;
#   3. the binaries, /etc/passwd and /etc/group for the non-root user go on
#      top; umoci turns the tree into an OCI layout with the user,
#      entrypoint and labels; skopeo writes a docker-archive that both
#      `docker load` and `kind load image-archive` take.
#
# usage: scripts/images.sh [--bin DIR] [--out DIR] [--registry REG]
#   --bin       where cinch-control, cinchctl and cinch-agent are
#               (default build/release/bin, built by `make build`)
#   --out       where <name>.tar and the OCI layout go (default build/images)
#   --registry  image name prefix (default ghcr.io/cinch-mesh); the
#               manifests take theirs from deploy/k8s/kustomization.yaml
# Tags: the project version (the tag the manifests and the injector use)
# and, as an additional tag, `git describe` of the tree.
set -eu
cd "$(dirname "$0")/.."
BIN=build/release/bin
OUT=build/images
REG=ghcr.io/cinch-mesh
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--registry) REG=$2; shift 2 ;;
	*) echo "images.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done
for t in mmdebstrap umoci skopeo; do
	command -v $t >/dev/null || { echo "images.sh: $t missing (scripts/deps.sh images)" >&2; exit 1; }
done
VERSION=$(sed -n 's/^project(cinch VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
GITVER=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
SOURCES=$(ls /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo /etc/apt/sources.list)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/cinch-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The Debian packages whose files the binaries' shared libraries are.
lib_packages() {
	for b in "$@"; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
		while read -r lib; do
			real=$(readlink -f "$lib")
			dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null ||
				dpkg -S "$lib" 2>/dev/null || { echo "images.sh: no package has $lib" >&2; exit 1; }
		done | cut -d: -f1 | sort -u | tr '\n' ',' | sed 's/,$//'
}

# build NAME USER ENTRYPOINT EXTRA_PACKAGES BINARY...
build() {
	name=$1 user=$2 entry=$3 extra=$4
	shift 4
	pkgs=$(lib_packages "$@")
	[ -z "$extra" ] || pkgs="$pkgs,$extra"
	echo "images.sh: $name: $pkgs"
	mmdebstrap --quiet --variant=extract --include="$pkgs" bookworm "$WORK/$name-root.tar" - <"$SOURCES"
	root=$WORK/$name/rootfs
	mkdir -p "$root"
	tar -C "$root" -xf "$WORK/$name-root.tar"
	# Nothing an unpacked-but-unconfigured package system leaves is needed.
	rm -rf "$root/var/lib/dpkg" "$root/var/cache/apt" "$root/var/lib/apt" "$root/usr/share/doc" \
		"$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale"
	mkdir -p "$root/usr/bin"
	for b in "$@"; do install -m 0755 "$b" "$root/usr/bin/$(basename "$b")"; done
	# update-alternatives would have made these (Debian 12's default backend).
	case ",$extra," in *,iptables,*)
		for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
			ln -sf xtables-nft-multi "$root/usr/sbin/$t"
		done ;;
	esac
	uid=${user%:*}
	gid=${user#*:}
	mkdir -p "$root/etc" "$root/tmp"
	chmod 1777 "$root/tmp"
	printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncinch:x:%s:%s:cinch:/nonexistent:/usr/sbin/nologin\n' \
		"$uid" "$gid" >"$root/etc/passwd"
	printf 'root:x:0:\ncinch:x:%s:\n' "$gid" >"$root/etc/group"
	layout=$OUT/oci-$name
	rm -rf "$layout"
	umoci init --layout "$layout"
	umoci new --image "$layout:$VERSION"
	umoci unpack --image "$layout:$VERSION" "$WORK/$name-bundle" >/dev/null
	rm -rf "$WORK/$name-bundle/rootfs"
	mv "$root" "$WORK/$name-bundle/rootfs"
	umoci repack --image "$layout:$VERSION" "$WORK/$name-bundle"
	umoci config --image "$layout:$VERSION" --config.user "$user" --config.entrypoint "$entry" \
		--config.workingdir / --author "Cinch" \
		--config.label "org.opencontainers.image.version=$GITVER" \
		--config.label "org.opencontainers.image.title=$name"
	umoci gc --layout "$layout"
	rm -f "$OUT/$name.tar"
	skopeo copy --quiet "oci:$layout:$VERSION" "docker-archive:$OUT/$name.tar:$REG/$name:$VERSION" \
		--additional-tag "$REG/$name:$GITVER"
	echo "images.sh: $OUT/$name.tar ($REG/$name:$VERSION, $REG/$name:$GITVER)"
}

# The control and cinchctl run as 65532 (the Deployment's runAsUser); the
# agent as 1337, the UID its interception rules exempt.
build cinch-control 65532:65532 /usr/bin/cinch-control "" "$BIN/cinch-control" "$BIN/cinchctl"
build cinch-agent 1337:1337 /usr/bin/cinch-agent iptables "$BIN/cinch-agent"
