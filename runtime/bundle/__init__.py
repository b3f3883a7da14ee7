"""The bundle contract, read side: the manifest dataclasses and the reader that verifies a bundle directory."""
