"""The SDK's version: the one place it is written (pyproject.toml reads it from here, the
bundle writer records it in every manifest as ``sdk_version``)."""

__version__ = "0.1.0"
