"""Embedded datasets (quick profile): registered on import."""
