"""Features that plug into the forwarder: cache control, dumps, pricing, the request log."""
