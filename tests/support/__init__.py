"""Helpers shared by the test suite (model zoo, node runner, data generators)."""
