#!/usr/bin/env bash
# Build Headway's bundle for this OS with PyInstaller, package it, and smoke-test the frozen binary.
#
#   packaging/build.sh                 # build + package + smoke test
#   SMOKE=0 packaging/build.sh         # skip the smoke test
#   CLEAN=1 packaging/build.sh         # drop PyInstaller's cache first (release builds)
#   HEADWAY_BUNDLE_GTK=0 packaging/build.sh   # Linux: without GTK (icon only, no menu; 96 MB instead of ~230 MB)
#
# Output (dist/):
#   Linux   dist/headway/ (one folder) and dist/headway-<version>-linux-<arch>.tar.gz
#   macOS   dist/Headway.app and dist/Headway-<version>.dmg (hdiutil)
# Windows builds run PyInstaller directly and then Inno Setup; see packaging/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DIST=${DIST:-$ROOT/dist}
WORK=${WORK:-$ROOT/build/pyinstaller}
VERSION=$("$PYTHON" -c 'import proxy; print(proxy.__version__)')
ARCH=$(uname -m)

say() { printf '[build +%ss] %s\n' "$SECONDS" "$*" >&2; }

args=(--noconfirm --distpath "$DIST" --workpath "$WORK")
if [[ ${CLEAN:-0} == 1 ]]; then args+=(--clean); fi

say "PyInstaller ${args[*]} packaging/headway.spec"
"$PYTHON" -m PyInstaller "${args[@]}" packaging/headway.spec
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
