#!/bin/sh
# test_install: install this build into a temporary prefix and use it as a user would.
#   - libcnn has no CUDA library among its DT_NEEDED; libcnn_cuda.so sits next to it
#     when CUDA was built, and the installed cnn finds it there;
#   - the README's C example (README.md, "<!-- example: hello.c -->") builds with
#     `cc hello.c $(pkg-config --cflags --libs cnn)` and with the README's CMake project
#     (find_package(cnn), cnn::cnn), and both run without LD_LIBRARY_PATH, training an
#     installed model found by cnn_model_path;
#   - the installed headers compile on their own (no private header);
#   - the installed cnn: --version, `summary resnet9.cfg` from another directory, a
#     clear error for a model that is nowhere; all again after moving the prefix.
# usage: test_install.sh BUILD_DIR SOURCE_DIR VERSION C_COMPILER SANITIZED(0|1)
set -eu
build=$1 src=$2 version=$3 cc=$4 sanitized=$5
if [ "$sanitized" = 1 ]; then
  echo "SKIP: a sanitizer build's libcnn needs the sanitizer runtime in every program"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cnn-install.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
has() { # has FILE TEXT: FILE contains TEXT (fixed string)
  grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks '$2'"; }
}
unset LD_LIBRARY_PATH CNN_CUDA_MODULE

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
pc=$(find "$prefix" -name cnn.pc)
[ -n "$pc" ] || fail "no cnn.pc installed"
libdir=$(dirname "$(dirname "$pc")")
echo "installed to $prefix (lib dir $libdir)"
for f in "$prefix/bin/cnn" "$libdir/libcnn.so.0" "$libdir/libcnn.so" "$prefix/include/cnn/cnn.h" \
  "$libdir/cmake/cnn/cnnConfig.cmake" "$libdir/cmake/cnn/cnnConfigVersion.cmake" \
  "$prefix/share/cnn/models/resnet9.cfg"; do
  [ -e "$f" ] || fail "$f not installed"
done

# ---- libcnn links no CUDA library; the module is next to it when CUDA was built
cuda=$(sed -n 's/^cuda=//p' "$pc")
if command -v readelf >/dev/null; then
  readelf -d "$libdir/libcnn.so.0" >"$tmp/dyn.txt"
  if grep NEEDED "$tmp/dyn.txt" | grep -Ei 'cuda|cublas|nvrtc'; then fail "libcnn needs a CUDA library"; fi
  echo "libcnn DT_NEEDED: $(sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' "$tmp/dyn.txt" | tr '\n' ' ')"
fi
if [ "$cuda" = 1 ]; then
  [ -f "$libdir/libcnn_cuda.so" ] || fail "CUDA built but $libdir/libcnn_cuda.so not installed"
fi

# ---- the installed headers stand alone
printf '#include <cnn/loader.h>\n#include <cnn/data.h>\n#include <cnn/cnn.h>\nint main(void) { return 0; }\n' >"$tmp/headers.c"
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include" -c "$tmp/headers.c" -o "$tmp/headers.o" ||
  fail "the installed headers do not compile on their own"
if grep -n '#include "' "$prefix"/include/cnn/*.h | grep -v '"cnn/'; then fail "a public header includes a private one"; fi

# ---- the README's example, extracted from README.md
example() { # example NAME: the fenced block after "<!-- example: NAME -->"
  awk -v m="<!-- example: $1 -->" '
    $0 == m { on = 1; next }
    on && /^```/ { if (in_block) exit; in_block = 1; next }
    in_block { print }' "$src/README.md"
}
mkdir "$tmp/pc" "$tmp/cm" "$tmp/run-pc" "$tmp/run-cm"
example hello.c >"$tmp/pc/hello.c"
cp "$tmp/pc/hello.c" "$tmp/cm/hello.c"
example CMakeLists.txt >"$tmp/cm/CMakeLists.txt"
[ -s "$tmp/pc/hello.c" ] && [ -s "$tmp/cm/CMakeLists.txt" ] || fail "no example in README.md"

check_hello() { # check_hello OUT PREFIX: the example's output
  has "$1" "libcnn $version"
  has "$1" "$2/share/cnn/models/fashion.cfg step 10: loss"
  awk '/ step 1:/ { a = $5 + 0 } / step 10:/ { b = $5 + 0 } END { exit !(b < a / 2) }' "$1" ||
    fail "the example's loss did not go down"
  has "$1" "saved hello.safetensors"
}

# pkg-config, as the README says (only PKG_CONFIG_PATH added for this prefix)
flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs cnn) || fail "pkg-config cnn"
echo "pkg-config --cflags --libs cnn: $flags"
[ "$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion cnn)" = "$version" ] || fail "cnn.pc version"
[ "$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --variable=modelsdir cnn)" = "$prefix/share/cnn/models" ] ||
  fail "cnn.pc modelsdir"
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c11 -Wall -Wextra -Werror "$tmp/pc/hello.c" -o "$tmp/pc/hello" $flags || fail "cc hello.c with cnn.pc"
(cd "$tmp/run-pc" && "$tmp/pc/hello") >"$tmp/pc.out" 2>&1 || { cat "$tmp/pc.out"; fail "hello (pkg-config) did not run"; }
cat "$tmp/pc.out"
check_hello "$tmp/pc.out" "$prefix"
[ -s "$tmp/run-pc/hello.safetensors" ] || fail "hello.safetensors not written"

# ---- the installed cnn, from another directory
run_cnn() { # run_cnn PREFIX: --version, a model by name, a model that is nowhere
  (cd "$tmp" && "$1/bin/cnn" --version) >"$tmp/version.out" 2>&1 || { cat "$tmp/version.out"; fail "cnn --version"; }
  cat "$tmp/version.out"
  has "$tmp/version.out" "cnn $version"
  has "$tmp/version.out" "libcnn $version ($1/"
  has "$tmp/version.out" "models: $1/share/cnn/models"
  if [ "$cuda" = 1 ]; then # found next to libcnn (loaded, or named in why it did not load)
    mod=$(sed -n 's|^CUDA backend: built.* \(/[^ :]*/libcnn_cuda\.so\).*|\1|p' "$tmp/version.out")
    [ -n "$mod" ] && [ "$(readlink -f "$mod")" = "$(readlink -f "$1/${libdir#"$prefix"/}/libcnn_cuda.so")" ] ||
      fail "the installed cnn did not find its libcnn_cuda.so"
  else
    has "$tmp/version.out" "CUDA backend: not built"
  fi
  (cd "$tmp" && "$1/bin/cnn" train --version) >"$tmp/version2.out" 2>&1 && has "$tmp/version2.out" "cnn $version" ||
    fail "cnn train --version"
  (cd "$tmp" && "$1/bin/cnn" summary resnet9.cfg) >"$tmp/summary.out" 2>&1 || { cat "$tmp/summary.out"; fail "cnn summary resnet9.cfg"; }
  has "$tmp/summary.out" "$1/share/cnn/models/resnet9.cfg: input 28x28x1"
  (cd "$tmp" && "$1/bin/cnn" summary lenet) >"$tmp/summary.out" 2>&1 || { cat "$tmp/summary.out"; fail "cnn summary lenet"; }
  has "$tmp/summary.out" "3,274,634"
  if (cd "$tmp" && "$1/bin/cnn" summary no-such-model.cfg) >"$tmp/nomodel.out" 2>&1; then
    fail "cnn summary no-such-model.cfg succeeded"
  fi
  cat "$tmp/nomodel.out"
  has "$tmp/nomodel.out" "no-such-model.cfg: no such file, and no model 'no-such-model.cfg' in $1/share/cnn/models"
  has "$tmp/nomodel.out" "fashion.cfg, lenet.cfg, mobilenet_v2.cfg, resnet50.cfg, resnet9.cfg"
}
run_cnn "$prefix"

# ---- a moved prefix: cnn finds its libcnn, module and models; the CMake package is
# relocatable (cnn.pc names the prefix installed to: it is not)
mv "$prefix" "$tmp/moved"
prefix=$tmp/moved
libdir=$prefix/${libdir#"$tmp/prefix"/}
run_cnn "$prefix"

# CMake: the README's project against the moved prefix
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  >"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log"; fail "cmake configure with find_package(cnn)"; }
cmake --build "$tmp/cm/build" >>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log"; fail "cmake build of hello"; }
(cd "$tmp/run-cm" && "$tmp/cm/build/hello") >"$tmp/cm.out" 2>&1 || { cat "$tmp/cm.out"; fail "hello (CMake) did not run"; }
cat "$tmp/cm.out"
check_hello "$tmp/cm.out" "$prefix"
# the example's error path: the model gone, it says so and fails
rm "$prefix/share/cnn/models/fashion.cfg"
if (cd "$tmp/run-cm" && "$tmp/cm/build/hello") >"$tmp/cm.out" 2>&1; then fail "hello ran without its model"; fi
cat "$tmp/cm.out"
has "$tmp/cm.out" "hello: cnn_model_path(\"fashion.cfg\", cfg, sizeof cfg) failed: no model 'fashion.cfg' in $prefix/share/cnn/models"
echo "OK"
