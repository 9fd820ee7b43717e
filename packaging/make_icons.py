"""Draw the app icons (PNG, ICO, ICNS) with the tray's own renderer, each size drawn natively.

    python packaging/make_icons.py OUT_DIR

The app icon is the tray icon's healthy ring with an "h": the same picture users see in the tray.
Generated at build time, so no binary icon files live in the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from tray.icon import IconState, Level, render  # noqa: E402

ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def app_icon(size: int) -> Image.Image:
    return render(IconState(Level.HEALTHY, "h", 0.72, "Headway"), size)


def write_icons(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = {"png": out / "headway.png", "ico": out / "headway.ico", "icns": out / "headway.icns"}
    app_icon(256).save(written["png"])
    ico = [app_icon(s) for s in ICO_SIZES]
    ico[-1].save(written["ico"], format="ICO", sizes=[(s, s) for s in ICO_SIZES], append_images=ico[:-1])
    icns = [app_icon(s) for s in ICNS_SIZES]
    icns[-1].save(written["icns"], format="ICNS", append_images=icns[:-1])
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for kind, path in write_icons(Path(sys.argv[1])).items():
        print(f"{kind}: {path}")
