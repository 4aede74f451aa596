"""Installed package versions, as results and artefacts record them (mlalign's own is pyproject.toml's)."""

from importlib import metadata


def package_versions(*names: str) -> dict[str, str]:
    """The installed version of each distribution in `names` ('not installed' where it is absent)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
