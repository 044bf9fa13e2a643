#!/usr/bin/env bash
# The relocatable dependency bundle, for GPU machines with no package registry (an
# air-gapped cluster node, the GPU test machine): everything loom compiles and links
# against that comes neither with LibTorch nor with the C/C++ runtime (MPI, HDF5, Abseil,
# yaml-cpp, nlohmann-json, stb, giflib, SentencePiece, OpenSSL's libcrypto, GoogleTest),
# taken from this machine's Debian packages (launch/setup.sh installs them) into one
# folder and packed as a tarball. Keep it out of git (bundle/ is ignored).
#
#   launch/bundle.sh [OUT]          default bundle/loom-deps.tar.gz
#
# On the target, unpack it anywhere and source its env.sh: it points CMake
# (CMAKE_PREFIX_PATH, PKG_CONFIG_PATH), the loader (LD_LIBRARY_PATH) and Open MPI
# (OPAL_PREFIX, PATH) at the folder. launch/gpu_check.sh does both itself:
#   tar -xzf loom-deps.tar.gz -C /opt && source /opt/loom-deps/env.sh
#   cmake -S . -B build -G Ninja -DCMAKE_PREFIX_PATH="$LOOM_DEPS/usr;$(python3 -c \
#     'import torch;print(torch.utils.cmake_prefix_path)')"
# The libraries are Debian 12's (glibc 2.36, libstdc++ of GCC 12): the target needs
# those or newer. Open MPI comes without its InfiniBand/UCX/OFI transports (shared
# memory and TCP only): a cluster with a fast fabric builds against its own MPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="${1:-bundle/loom-deps.tar.gz}"
log() { printf '[bundle] %s\n' "$*" >&2; }
die() { printf '[bundle] error: %s\n' "$*" >&2; exit 1; }

# Headers, CMake and pkg-config files, link-time symlinks, and Open MPI's runtime
# (wrappers, launcher, plugins, help texts).
PACKAGES=(
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libpmix-dev
  libhdf5-dev libhdf5-103-1
  libabsl-dev libabsl20220623 libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libstb-dev libstb0
  libgif-dev libgif7
  libsentencepiece-dev libsentencepiece0 libssl-dev libssl3 zlib1g-dev zlib1g
  libgtest-dev libgmock-dev googletest
)
# Open MPI's plugins for fabrics the target may not have; each pulls in tens of MiB.
SKIP_PLUGINS='ucx|uct|openib|ofi|usnic|psm|portals|verbs|hcoll|fca|mxm|cuda'
# The C and C++ runtime: always the target's own.
SYSTEM_LIBS='^(ld-linux.*|linux-vdso.*|libc|libm|libdl|librt|libpthread|libutil|libresolv|libanl|libnsl|libstdc\+\+|libgcc_s)\.so'

for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    die "Debian package $p is not installed; run launch/setup.sh first (it installs loom's dependencies)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
B="$work/loom-deps"
mkdir -p "$B"

# 1. The packages' files (no documentation, manuals, static archives or HDF5's Fortran
#    and C++ parts: loom uses the C API).
log "copying ${#PACKAGES[@]} packages"
for p in "${PACKAGES[@]}"; do
  dpkg -L "$p" | while IFS= read -r f; do
    [[ -f $f || -L $f ]] || continue
    case "$f" in
      /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/usr/share/bug/*) continue ;;
      *.a) [[ $f == */libgtest*.a || $f == */libgmock*.a ]] || continue ;;
      *fortran*|*hdf5_cpp*|*hdf5_hl_cpp*|*.mod) continue ;;
    esac
    if [[ $f == */openmpi3/mca_* || $f == */pmix/mca_* ]] && [[ $(basename "$f") =~ $SKIP_PLUGINS ]]; then
      continue
    fi
    mkdir -p "$B$(dirname "$f")"
    cp -a "$f" "$B$f"
  done
done

# 2. Absolute symlinks (Debian's alternatives, /etc paths) point inside the bundle when
#    their target is there, else become copies of what they resolve to.
relink() {
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    [[ $target == /* ]] || continue
    if [[ -e $B$target ]]; then
      ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$B$target")" "$link"
    elif [[ -e $target ]]; then
      rm "$link"
      cp -aL "$target" "$link"
    else
      rm "$link"
    fi
  done < <(find "$B" -type l)
}
relink
# Debian's alternatives give the generic command names; no package lists them.
for n in mpirun mpiexec mpicc mpicxx mpic++; do
  [[ -e $B/usr/bin/$n.openmpi ]] && ln -sfn "$n.openmpi" "$B/usr/bin/$n"
done

# 3. The shared libraries all of that needs, and loom's own binary needs, closed over
#    ldd, minus the C/C++ runtime and whatever comes with LibTorch or CUDA.
libdir="$B/usr/lib/x86_64-linux-gnu"
mkdir -p "$libdir"
elves() {
  find "$B" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
    xargs -0 file -L 2>/dev/null | grep -E 'ELF 64-bit.*(shared object|executable)' | cut -d: -f1
  [[ -x build/loom ]] && echo build/loom
}
for round in 1 2 3 4; do
  added=0
  while IFS= read -r lib; do
    name=$(basename "$lib")
    [[ $name =~ $SYSTEM_LIBS ]] && continue
    [[ $lib == /usr/lib/* || $lib == /lib/* ]] || continue   # not the venv's torch, not CUDA
    [[ -e $libdir/$name ]] && continue
    cp -L "$lib" "$libdir/$name"
    added=$((added + 1))
  done < <(elves | xargs -r ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
  log "closure round $round: $added libraries added"
  ((added == 0)) && break
done

# 4. pkg-config files: prefix relative to where the file lies.
while IFS= read -r pc; do
  rel=$(realpath --relative-to="$(dirname "$pc")" "$B/usr")
  sed -i -e "s|^prefix=/usr\$|prefix=\${pcfiledir}/$rel|" \
         -e "s|=/usr/|=\${pcfiledir}/$rel/|g" -e "s| -I/usr/| -I\${pcfiledir}/$rel/|g" \
         -e "s| -L/usr/| -L\${pcfiledir}/$rel/|g" "$pc"
done < <(find "$B" -name '*.pc')
# CMake package files that spell /usr out instead of computing their prefix.
while IFS= read -r f; do
  rel=$(realpath --relative-to="$(dirname "$f")" "$B/usr")
  sed -i -e "s|\"/usr/|\"\${CMAKE_CURRENT_LIST_DIR}/$rel/|g" "$f"
done < <(grep -rl '"/usr/' "$B/usr/lib/x86_64-linux-gnu/cmake" "$B/usr/share/cmake" 2>/dev/null || true)
# HDF5's compiler wrappers carry absolute paths; CMake's FindHDF5 then searches the
# prefix instead (include/hdf5/serial, lib/x86_64-linux-gnu/hdf5/serial).
rm -f "$B"/usr/bin/h5cc* "$B"/usr/bin/h5pcc* "$B"/usr/bin/h5c++* "$B"/usr/bin/h5fc*

# 5. The environment.
cat >"$B/env.sh" <<'EOF'
# Source this to build and run loom against the bundle it lies in (launch/bundle.sh).
LOOM_DEPS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LOOM_DEPS
export CMAKE_PREFIX_PATH="$LOOM_DEPS/usr${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$LOOM_DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$LOOM_DEPS/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$LOOM_DEPS/usr/lib/x86_64-linux-gnu:$LOOM_DEPS/usr/lib/x86_64-linux-gnu/openmpi/lib:$LOOM_DEPS/usr/lib/x86_64-linux-gnu/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$LOOM_DEPS/usr/bin:$PATH"
# Headers and libraries named bare (-lgif, <gif_lib.h>) are searched here too.
export CPATH="$LOOM_DEPS/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$LOOM_DEPS/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
# Open MPI and PMIx find their plugins and help texts under the prefix they were built for.
export OPAL_PREFIX="$LOOM_DEPS/usr"
export PMIX_INSTALL_PREFIX="$LOOM_DEPS/usr"
export PMIX_MCA_mca_base_component_path="$LOOM_DEPS/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix"
export OMPI_MCA_mca_base_component_path="$LOOM_DEPS/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3"
export OMPI_MCA_mca_base_param_files="$LOOM_DEPS/etc/openmpi/openmpi-mca-params.conf"
# FindHDF5 takes the serial build from Debian's per-flavour folder (include/ and lib/).
export HDF5_ROOT="$LOOM_DEPS/usr/lib/x86_64-linux-gnu/hdf5/serial"
EOF

mkdir -p "$(dirname "$OUT")"
tar -czf "$OUT" -C "$work" loom-deps
log "wrote $OUT: $(du -sh "$B" | cut -f1) unpacked, $(du -h "$OUT" | cut -f1) packed, $(find "$B" -type f | wc -l) files"
