"""The frozen app's entry point: the ``headway`` command (``headway`` alone runs the tray)."""

from tray.cli import main

if __name__ == "__main__":
    main()
