#!/usr/bin/env bash
# Builds the Python and JavaScript components: the "hello" guests and the wonka-orders example:
#
#   guests/polyglot/build.sh OUT_DIR    ->  OUT_DIR/python_hello.wasm, OUT_DIR/js_hello.wasm,
#                                           OUT_DIR/wonka_orders.wasm, OUT_DIR/wonka_pricing.wasm
#
# Installs its pinned tools first (once) into $MESHWA_TOOLS_DIR (default <repo>/target/tools):
# a Python venv with componentize-py, an npm prefix with @bytecodealliance/componentize-js.
# Rebuilds a component only when its source, this script, the WIT or the tool is newer than it.
# They are built against wit/world.wit (wasi:http/proxy@0.2.12, and wasi:keyvalue for the
# example) and the repo's vendored WASI WIT.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
WASI_PACKAGES=(cli clocks filesystem http io random sockets keyvalue)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCRIPT="$HERE/$(basename "${BASH_SOURCE[0]}")"

die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
note() { printf 'build.sh: %s\n' "$*" >&2; }
need() { # need COMMAND WHY
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH (needed $2)"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

[[ $# -eq 1 && -n $1 ]] || die "usage: $0 OUT_DIR"
mkdir -p "$1" || die "cannot create output directory '$1'"
OUT=$(cd "$1" && pwd)
TOOLS=${MESHWA_TOOLS_DIR:-$REPO/target/tools}
mkdir -p "$TOOLS" || die "cannot create tools directory '$TOOLS'"
TOOLS=$(cd "$TOOLS" && pwd)

PY_VENV="$TOOLS/componentize-py-$COMPONENTIZE_PY_VERSION"
PY_STAMP="$PY_VENV/.installed"
COMPONENTIZE_PY="$PY_VENV/bin/componentize-py"
JS_PREFIX="$TOOLS/componentize-js-$COMPONENTIZE_JS_VERSION"
JS_STAMP="$JS_PREFIX/.installed"
COMPONENTIZE_JS="$JS_PREFIX/node_modules/.bin/componentize-js"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/meshwa-polyglot.XXXXXX")
trap 'rm -rf "$STAGE"; rm -f "$OUT"/.*.wasm.tmp.$$' EXIT

# One installer at a time per tools dir (when flock exists).
lock_tools() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$TOOLS/.lock"
        flock 9
    fi
}

# --- tools -------------------------------------------------------------------------------------

py_tool_ok() {
    [[ -f $PY_STAMP && -x $COMPONENTIZE_PY ]] &&
        [[ $("$COMPONENTIZE_PY" --version 2>/dev/null) == "componentize-py $COMPONENTIZE_PY_VERSION" ]]
}

js_tool_ok() {
    [[ -f $JS_STAMP && -x $COMPONENTIZE_JS ]] || return 1
    local pkg="$JS_PREFIX/node_modules/@bytecodealliance/componentize-js/package.json"
    [[ $(node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null) == "$COMPONENTIZE_JS_VERSION" ]]
}

install_py_tool() {
    py_tool_ok && return 0
    local python=${PYTHON:-python3}
    need "$python" "to create the venv for componentize-py $COMPONENTIZE_PY_VERSION (set PYTHON to choose another)"
    note "installing componentize-py==$COMPONENTIZE_PY_VERSION into $PY_VENV"
    local t0; t0=$(now)
    rm -rf "$PY_VENV"
    "$python" -m venv "$PY_VENV" ||
        die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    "$PY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" ||
        die "pip could not install componentize-py==$COMPONENTIZE_PY_VERSION (is PyPI or a pip cache/mirror reachable?)"
    touch "$PY_STAMP"
    py_tool_ok || die "componentize-py $COMPONENTIZE_PY_VERSION installed but '$COMPONENTIZE_PY --version' does not report it"
    note "installed componentize-py in $(since "$t0")"
}

install_js_tool() {
    js_tool_ok && return 0
    need npm "to install @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
    note "installing @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION into $JS_PREFIX"
    local t0; t0=$(now)
    rm -rf "$JS_PREFIX"
    mkdir -p "$JS_PREFIX"
    npm install --prefix "$JS_PREFIX" --prefer-offline --no-audit --no-fund --loglevel=error \
        --save-exact "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2 ||
        die "npm could not install @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION (is the npm registry or cache reachable?)"
    touch "$JS_STAMP"
    js_tool_ok || die "componentize-js $COMPONENTIZE_JS_VERSION installed but its package.json does not report it"
    note "installed componentize-js in $(since "$t0")"
}

need node "to run componentize-js (Node.js >= 18)"
if ! py_tool_ok || ! js_tool_ok; then
    lock_tools
    install_py_tool
    install_js_tool
fi

# --- WIT ---------------------------------------------------------------------------------------

WIT_INPUTS=("$HERE/wit/world.wit")
[[ -f $HERE/wit/world.wit ]] || die "missing $HERE/wit/world.wit"
mkdir -p "$STAGE/wit/deps"
cp "$HERE/wit/world.wit" "$STAGE/wit/"
for pkg in "${WASI_PACKAGES[@]}"; do
    src="$REPO/wit/deps/$pkg"
    compgen -G "$src/*.wit" >/dev/null || die "missing vendored WIT package: $src/*.wit"
    cp -r "$src" "$STAGE/wit/deps/$pkg"
    WIT_INPUTS+=("$src"/*.wit)
done

# --- components --------------------------------------------------------------------------------

# stale OUT INPUT...: true when OUT is missing or older than any input.
stale() {
    local out=$1 f
    shift
    [[ -f $out ]] || return 0
    for f in "$@"; do
        [[ $f -nt $out ]] && return 0
    done
    return 1
}

# is_component FILE: a WebAssembly component (not a core module) by its header.
is_component() {
    [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 0061736d0d000100 ]]
}

# build NAME TOOL TOOL_STAMP SOURCE BUILDER WORLD: when OUT_DIR/NAME.wasm is stale, runs
# `BUILDER SOURCE TMP WORLD` (which must write the component to TMP) and moves TMP into place, so
# a failed or interrupted build never leaves a partial NAME.wasm.
build() {
    local name=$1 tool=$2 tool_stamp=$3 source=$4 builder=$5 world=$6
    local out="$OUT/$name.wasm" tmp="$OUT/.$name.wasm.tmp.$$"
    [[ -f $source ]] || die "missing source $source"
    if ! stale "$out" "$source" "$SCRIPT" "$tool_stamp" "${WIT_INPUTS[@]}"; then
        note "$name.wasm is up to date"
        return 0
    fi
    rm -f "$tmp"
    local t0; t0=$(now)
    note "building $name.wasm with $tool"
    "$builder" "$source" "$tmp" "$world" || die "$tool failed to build $name.wasm from $source (see its output above)"
    [[ -s $tmp ]] || die "$tool exited 0 but wrote no $name.wasm"
    is_component "$tmp" || die "$tool wrote $name.wasm, but it is not a WebAssembly component"
    mv -f "$tmp" "$out"
    note "built $out ($(stat -c %s "$out") bytes) in $(since "$t0")"
}

build_python() { # SOURCE TMP WORLD
    # Build from a copy so that no __pycache__ lands in the source tree.
    local app="$STAGE/python"
    rm -rf "$app"
    mkdir -p "$app"
    cp "$1" "$app/app.py"
    PYTHONDONTWRITEBYTECODE=1 "$COMPONENTIZE_PY" --quiet -d "$STAGE/wit" -w "$3" \
        componentize --python-path "$app" app -o "$2"
}

build_js() { # SOURCE TMP WORLD
    "$COMPONENTIZE_JS" --wit "$STAGE/wit" --world-name "$3" -o "$2" "$1"
}

EXAMPLE="$REPO/examples/wonka-orders"
build python_hello componentize-py "$PY_STAMP" "$HERE/python-hello/app.py" build_python http-hello
build js_hello componentize-js "$JS_STAMP" "$HERE/js-hello/app.js" build_js http-hello
build wonka_orders componentize-py "$PY_STAMP" "$EXAMPLE/orders.py" build_python http-kv
build wonka_pricing componentize-js "$JS_STAMP" "$EXAMPLE/pricing.js" build_js http-kv
