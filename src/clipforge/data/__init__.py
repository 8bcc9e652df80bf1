"""Data utilities for clipforge: synthetic worlds, datasets and writers."""
