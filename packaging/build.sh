#!/usr/bin/env bash
# Build Headway's bundle for this OS with PyInstaller, package it, and smoke-test the frozen binary.
#
#   packaging/build.sh                 # build + package + smoke test
#   SMOKE=0 packaging/build.sh         # skip the smoke test
#   CLEAN=1 packaging/build.sh         # drop PyInstaller's cache first (release builds)
#   HEADWAY_BUNDLE_GTK=0 packaging/build.sh   # Linux: without GTK (icon only, no menu; 96 MB instead of ~230 MB)
#   LOCKED=0 packaging/build.sh        # a quick local build from .venv as it is (never for a release)
#
# The bundle is built in its own venv (build/bundle-venv) holding exactly packaging/requirements.lock, installed
# with `pip install --require-hashes`: every file must match its recorded sha256, so what ships is what was
# reviewed. The venv is rebuilt only when the lock or the interpreter changes (a stamp file). Headway's own code is
# taken from this checkout (the spec's pathex), not installed. packaging/lock.sh regenerates the lock.
#
# Output (dist/):
#   Linux   dist/headway/ (one folder) and dist/headway-<version>-linux-<arch>.tar.gz
#   macOS   dist/Headway.app and dist/Headway-<version>.dmg (hdiutil)
# Windows builds run PyInstaller directly and then Inno Setup; see packaging/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}  # runs the smoke test (it needs the test fakes); builds when LOCKED=0
DIST=${DIST:-$ROOT/dist}
WORK=${WORK:-$ROOT/build/pyinstaller}
VERSION=$("$PYTHON" -c 'import proxy; print(proxy.__version__)')
ARCH=$(uname -m)

say() { printf '[build +%ss] %s\n' "$SECONDS" "$*" >&2; }

args=(--noconfirm --distpath "$DIST" --workpath "$WORK")
if [[ ${CLEAN:-0} == 1 ]]; then args+=(--clean); fi

BUILD_PYTHON=$PYTHON
if [[ ${LOCKED:-1} == 1 ]]; then
    BASE_PYTHON=${BASE_PYTHON:-python3}
    LOCK="$ROOT/packaging/requirements.lock"
    BUILD_VENV=${BUILD_VENV:-$ROOT/build/bundle-venv}
    STAMP="$BUILD_VENV/.headway-lock"
    key=$({ "$BASE_PYTHON" -c 'import sys; print(sys.version)'; cat "$LOCK"; } | sha256sum | cut -d' ' -f1)
    if [[ -x "$BUILD_VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$key" ]]; then
        say "build venv up to date ($BUILD_VENV)"
    else
        say "build venv: installing packaging/requirements.lock (hash-checked) into $BUILD_VENV"
        rm -rf "$BUILD_VENV"
        "$BASE_PYTHON" -m venv "$BUILD_VENV"
        "$BUILD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes --no-deps -r "$LOCK"
        "$BUILD_VENV/bin/python" -m pip check >&2
        printf '%s\n' "$key" >"$STAMP"
    fi
    BUILD_PYTHON="$BUILD_VENV/bin/python"
fi

say "PyInstaller ${args[*]} packaging/headway.spec"
"$BUILD_PYTHON" -m PyInstaller "${args[@]}" packaging/headway.spec
say "bundle built"

case "$(uname -s)" in
    Linux)
        BINARY="$DIST/headway/headway"
        ARCHIVE="$DIST/headway-$VERSION-linux-$ARCH.tar.gz"
        tar -C "$DIST" -czf "$ARCHIVE" headway
        say "tarball: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1); bundle $(du -sh "$DIST/headway" | cut -f1))"
        ;;
    Darwin)
        BINARY="$DIST/Headway.app/Contents/MacOS/Headway"
        DMG="$DIST/Headway-$VERSION.dmg"
        STAGE=$(mktemp -d)
        cp -R "$DIST/Headway.app" "$STAGE/"
        ln -s /Applications "$STAGE/Applications"
        rm -f "$DMG"
        hdiutil create -volname "Headway $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
        rm -rf "$STAGE"
        say "disk image: $DMG"
        ;;
    *)
        echo "build.sh builds on Linux and macOS; on Windows see packaging/README.md" >&2
        exit 2
        ;;
esac

if [[ ${SMOKE:-1} == 1 ]]; then
    say "smoke test"
    TRAY=()
    if [[ "$(uname -s)" == Linux ]] && command -v Xvfb >/dev/null && command -v dbus-run-session >/dev/null; then
        TRAY=(--tray)
    fi
    "$PYTHON" packaging/smoke_test.py "$BINARY" "${TRAY[@]}"
fi
say "done"
