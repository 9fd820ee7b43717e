"""The tray app, the composition root and the `headway` command."""
