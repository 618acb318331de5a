"""Helpers shared by the test tiers (unit/, integration/, system/): imported as ``support.<module>``."""
