"""rayeval.transport (installed from the top-level `transport/` folder)."""

if __name__ != "rayeval.transport":  # imported as a generic top-level module from a checkout
    raise ImportError("import rayeval.transport, not transport: this folder installs only as part of rayeval")
