"""rayeval.envs (installed from the top-level `envs/` folder)."""

if __name__ != "rayeval.envs":  # imported as a generic top-level module from a checkout
    raise ImportError("import rayeval.envs, not envs: this folder installs only as part of rayeval")
