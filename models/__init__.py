"""Sequence models trained on the feature cache (stage two); filled in by the next stage."""
