"""Full-profile datasets (downloaded once): registered on import."""
