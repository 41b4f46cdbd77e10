#!/usr/bin/env bash
# Builds the pagestream container image with podman, without a container
# registry:
#   1. cargo build --release --features s3 -p workers --bin pagestream
#   2. stages the build context: the binary (debug info split off into
#      $CARGO_TARGET_DIR/pagestream.debug), .pagestream/lib/*, the model
#      files named in topology/pipeline.toml [models.*] and models.sha256
#      (their sha256 as pinned in the topology), the licences
#   3. makes the base image localhost/pagestream-base:bookworm when missing:
#      debootstrap (minbase, with ca-certificates and libstdc++6) from the
#      Debian mirror apt uses on this machine, point and security updates,
#      pruned, then podman import
#   4. podman build -f deploy/Dockerfile, tagged with the workers crate version
#   5. prints the image size
# Idempotent: cargo and podman reuse their caches, the base is kept once made.
# Needs root (debootstrap, chroot), podman, debootstrap, cargo and python3
# (3.11+, for tomllib) on a Debian 12 x86_64 host.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: deploy/image/build.sh [--rebuild-base] [--base-only] [--help]

Builds localhost/pagestream:<version> from deploy/Dockerfile (see
deploy/image/README.md).

  --rebuild-base  make the base image again even if it exists (e.g. for new
                  Debian security updates)
  --base-only     only make the base image

Environment:
  CARGO_TARGET_DIR  cargo's target directory [target]; the build context is
                    staged in $CARGO_TARGET_DIR/pagestream-image
  CARGO_BUILD_JOBS  parallel rustc jobs (cargo's own variable)
  IMAGE             image name [localhost/pagestream]; tagged with the version
  BASE_IMAGE        base image [localhost/pagestream-base:bookworm]
  DEBIAN_MIRROR     mirror for debootstrap [the bookworm URI in apt's sources,
                    else http://deb.debian.org/debian]
  DEBIAN_SECURITY_MIRROR  [the bookworm-security URI in apt's sources, else
                    http://deb.debian.org/debian-security]
  PODMAN_RUNTIME    OCI runtime for podman [runc]
EOF
}

REBUILD_BASE=0
BASE_ONLY=0
while (($#)); do
    case $1 in
    --rebuild-base) REBUILD_BASE=1 ;;
    --base-only) BASE_ONLY=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    shift
done

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."

readonly TOPOLOGY=topology/pipeline.toml
readonly HOME_DIR=.pagestream
readonly TARGET_DIR=${CARGO_TARGET_DIR:-target}
readonly CONTEXT=$TARGET_DIR/pagestream-image
readonly DEBUG_FILE=$TARGET_DIR/pagestream.debug
readonly IMAGE=${IMAGE:-localhost/pagestream}
readonly BASE_IMAGE=${BASE_IMAGE:-localhost/pagestream-base:bookworm}
readonly RUNTIME=${PODMAN_RUNTIME:-runc}
readonly SUITE=bookworm

say() { printf 'build.sh: %s\n' "$*"; }
die() {
    printf 'build.sh: error: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch, with milliseconds.
now() { date +%s.%N; }
elapsed() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'; }

ROOTFS=
cleanup() {
    if [[ -n $ROOTFS && -d $ROOTFS ]]; then
        # Never follow a mount (debootstrap mounts proc and sys while it runs).
        local mount
        while read -r mount; do
            umount -l "$mount" 2>/dev/null || true
        done < <(awk -v root="$ROOTFS/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r)
        rm -rf --one-file-system "$ROOTFS"
    fi
}
trap cleanup EXIT

# podman raises the containers' open-file and process limits by default,
# which fails where it lacks CAP_SYS_RESOURCE (some VMs and nested
# containers: "error setting rlimit type 7: operation not permitted"); there,
# keep them within this shell's limits.
podman_ulimits() {
    local cap_eff nofile
    cap_eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
    if (((16#${cap_eff:-0} >> 24) & 1)); then
        return
    fi
    nofile=$(ulimit -Hn)
    [[ $nofile == unlimited ]] || printf '%s\n' --ulimit "nofile=$nofile:$nofile"
    printf '%s\n' --ulimit nproc=4096:4096
}

for tool in podman python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# "URI SUITE" for every deb source apt uses, one-line and deb822 formats.
apt_sources() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $file ]] || continue
        awk '$1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
            print $i, $(i + 1)
        }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -r $file ]] || continue
        awk 'function flush(  u, s, i, j, n, m) {
                if (types ~ /(^| )deb( |$)/ && enabled != "no") {
                    n = split(uris, u, " "); m = split(suites, s, " ")
                    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
                }
                types = uris = suites = enabled = ""
            }
            /^#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            { key = tolower($1); $1 = "" }
            key == "types:" { types = $0 }
            key == "uris:" { uris = $0 }
            key == "suites:" { suites = $0 }
            key == "enabled:" { enabled = tolower($0); gsub(/ /, "", enabled) }
            END { flush() }' "$file"
    done
}

# The URI apt uses for suite $1, else $2.
mirror_for() {
    local uri
    uri=$(apt_sources | awk -v suite="$1" '$2 == suite { print $1; exit }')
    printf '%s\n' "${uri:-$2}"
}

# The image's version: the workers crate's (the workspace's).
version() {
    local pkgid
    pkgid=$(cargo pkgid -p workers) || die "cargo pkgid -p workers failed"
    printf '%s\n' "${pkgid##*[#@]}"
}

# "sha256  path" for every [models.*] of the topology.
model_checksums() {
    python3 - "$TOPOLOGY" <<'EOF'
import re, sys, tomllib

with open(sys.argv[1], "rb") as f:
    models = tomllib.load(f).get("models", {})
if not models:
    sys.exit(f"{sys.argv[1]}: no [models.*] tables")
for name, model in sorted(models.items()):
    path, sha = model.get("path", ""), model.get("sha256", "")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        sys.exit(f"{sys.argv[1]}: [models.{name}] has no valid sha256")
    if not path or path.startswith("/") or ".." in path.split("/") or re.search(r"\s", path):
        sys.exit(f"{sys.argv[1]}: [models.{name}] path {path!r} is not a plain relative path")
    print(f"{sha}  {path}")
EOF
}

build_binary() {
    command -v cargo >/dev/null || die "cargo is not installed"
    command -v objcopy >/dev/null || die "objcopy is not installed (apt-get install binutils)"
    say "cargo build --release --locked --features s3 -p workers --bin pagestream (target: $TARGET_DIR)"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --features s3 -p workers --bin pagestream
}

stage_context() {
    local binary=$TARGET_DIR/release/pagestream sums path
    [[ -x $binary ]] || die "$binary is missing"
    for path in "$HOME_DIR/lib/libonnxruntime.so.1.32.0" "$HOME_DIR/lib/libpdfium.so"; do
        [[ -f $path ]] || die "$path is missing: run ./setup first"
    done
    sums=$(model_checksums)
    say "staging the build context in $CONTEXT"
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/bin" "$CONTEXT/lib" "$CONTEXT/models"
    # The release profile keeps line tables (~90 MB): the image gets the
    # binary without them (symbols stay, so backtraces name functions); they
    # are kept beside the context, linked by --add-gnu-debuglink.
    objcopy --only-keep-debug "$binary" "$DEBUG_FILE"
    objcopy --strip-debug --add-gnu-debuglink="$DEBUG_FILE" "$binary" "$CONTEXT/bin/pagestream"
    chmod 0755 "$CONTEXT/bin/pagestream"
    install -m 0644 "$HOME_DIR"/lib/* "$CONTEXT/lib/"
    while read -r _ path; do
        [[ -f $HOME_DIR/models/$path ]] || die "$HOME_DIR/models/$path is missing: run ./setup first"
        install -D -m 0644 "$HOME_DIR/models/$path" "$CONTEXT/models/$path"
    done <<<"$sums"
    printf '%s\n' "$sums" >"$CONTEXT/models.sha256"
    if [[ -d $HOME_DIR/licenses ]]; then
        cp -R "$HOME_DIR/licenses" "$CONTEXT/licenses"
    else
        mkdir -p "$CONTEXT/licenses"
    fi
    chmod -R u=rwX,go=rX "$CONTEXT"
}

make_base() {
    if ((!REBUILD_BASE)) && podman image exists "$BASE_IMAGE"; then
        say "base image $BASE_IMAGE exists (--rebuild-base makes it again)"
        return
    fi
    [[ $(id -u) -eq 0 ]] || die "making the base image needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    local mirror security started previous
    previous=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
    mirror=${DEBIAN_MIRROR:-$(mirror_for "$SUITE" http://deb.debian.org/debian)}
    security=${DEBIAN_SECURITY_MIRROR:-$(mirror_for "$SUITE-security" http://deb.debian.org/debian-security)}
    started=$(now)
    ROOTFS=$(mktemp -d /var/tmp/pagestream-base.XXXXXX)
    say "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase --include=ca-certificates,libstdc++6 --components=main \
        "$SUITE" "$ROOTFS" "$mirror"

    say "point and security updates ($mirror $SUITE-updates, $security $SUITE-security)"
    rm -f "$ROOTFS/etc/apt/sources.list"
    cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    chroot "$ROOTFS" apt-get -o APT::Sandbox::User=root update -qq
    chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 -y -qq upgrade
    chroot "$ROOTFS" apt-get clean

    say "pruning apt lists, caches, logs, docs (copyright files kept), man pages, locales"
    # Later package installs in derived images stay pruned too.
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/pagestream-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    (
        cd "$ROOTFS"
        rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/debconf/*-old var/lib/dpkg/*-old \
            usr/share/man usr/share/info usr/share/lintian var/cache/man
        find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
        find usr/share/doc -mindepth 1 -type d -empty -delete
        find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
        find var/log -type f -delete
        # The host's resolver and name, copied in by debootstrap; podman
        # provides its own at run time.
        rm -f etc/resolv.conf etc/hostname
        : >etc/machine-id
    )

    say "podman import -> $BASE_IMAGE"
    tar --numeric-owner -C "$ROOTFS" -c . |
        podman import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --message "debootstrap --variant=minbase $SUITE from $mirror, with ca-certificates and libstdc++6" \
            - "$BASE_IMAGE" >/dev/null
    cleanup
    ROOTFS=
    # The replaced base, unless images built on it still use it.
    if [[ -n $previous ]]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    say "base image made in $(elapsed "$started") s: $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" |
        awk '{ printf "%d bytes (%.1f MiB)", $1, $1 / 1048576 }')"
}

build_image() {
    local version tag revision started size ulimits
    mapfile -t ulimits < <(podman_ulimits)
    version=$(version)
    tag=$IMAGE:$version
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    if [[ $revision != unknown && -n $(git status --porcelain 2>/dev/null) ]]; then
        revision+=-dirty
    fi
    say "podman build -> $tag"
    started=$(now)
    podman build --runtime "$RUNTIME" --network=host --pull=never "${ulimits[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        -t "$tag" -f deploy/Dockerfile "$CONTEXT"
    say "podman build done in $(elapsed "$started") s"
    size=$(podman image inspect --format '{{.Size}}' "$tag")
    say "image $tag: $(awk -v s="$size" 'BEGIN { printf "%d bytes (%.1f MiB)", s, s / 1048576 }')"
}

if ((BASE_ONLY)); then
    make_base
    exit 0
fi
build_binary
stage_context
make_base
build_image
