"""The relay Worker's JavaScript module (``worker.js``), shipped as package data and uploaded by ``proxy.relay.setup``."""
