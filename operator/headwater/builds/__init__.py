"""Builds: from a BuildConfig to a Build, its Job, and its status."""
