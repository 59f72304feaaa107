#!/bin/sh
# dockerfile_test: images cannot be built here (no Docker engine), so check
# what can go wrong without building: every shared library the binaries
# need directly (DT_NEEDED) comes from a Debian package that the runtime
# stage of their Dockerfile installs (or libc6 and libgcc-s1, essential
# packages that debian:12-slim already has).
#   dockerfile_test.sh <bin dir> <deploy/docker dir>
set -eu
bindir=$1 dockerdir=$2
fail=0 checked=0

check() { # <binary> <Dockerfile>
	runtime=$(sed -n '/^FROM debian:12-slim/,$p' "$2")
	for soname in $(readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
		path=$(ldd "$1" | awk -v s="$soname" '$1 == s { print $3 }')
		[ -n "$path" ] || { echo "FAIL: $1: $soname not found by ldd"; fail=1; continue; }
		real=$(readlink -f "$path")
		pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)
		pkg=${pkg%%:*}
		checked=$((checked + 1))
		case "$pkg" in
		libc6 | libgcc-s1) continue ;; # essential: in debian:12-slim already
		"") echo "FAIL: $1: no package owns $path"; fail=1 ;;
		*) echo "$runtime" | grep -qw -- "$pkg" ||
			{ echo "FAIL: $(basename "$2") does not install $pkg (for $soname)"; fail=1; } ;;
		esac
	done
}

check "$bindir/cinch-agent" "$dockerdir/agent.Dockerfile"
check "$bindir/cinch-control" "$dockerdir/control.Dockerfile"
grep -q '^USER 1337:1337' "$dockerdir/agent.Dockerfile" || { echo "FAIL: agent not UID 1337"; fail=1; }
grep -q '^USER 65532' "$dockerdir/control.Dockerfile" || { echo "FAIL: control runs as root"; fail=1; }
echo "$checked libraries checked"
[ "$checked" -gt 5 ] || { echo "FAIL: too few libraries seen"; fail=1; }
exit $fail
