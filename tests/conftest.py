"""Settings shared by all tests."""

from __future__ import annotations

from hypothesis import settings

# Property tests check behaviour, not speed: on a loaded 2-core CI machine a
# per-example deadline only produces flaky failures.
settings.register_profile("headwater", deadline=None, print_blob=True)
settings.load_profile("headwater")
