"""The relay Worker's JavaScript modules (``worker.js`` the main one; see its header), shipped as package data and
uploaded as they are by ``proxy.relay.setup``."""
