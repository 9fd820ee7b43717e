from tray.cli import main

main()
