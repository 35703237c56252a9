"""``pytest`` runs with warnings as errors (STYLE.md §12), whatever a library does to the
warning filters when it is imported.

Authlib (a test peer) calls ``warnings.simplefilter("always", AuthlibDeprecationWarning)`` when
``authlib.deprecate`` is first imported. Imported while a test or the collection runs, that
filter lands in front of pytest's ``error`` and lets every Authlib deprecation through as a
mere line in the warnings summary. ``tests/conftest.py`` imports it while pytest loads the
configuration, whose filters are thrown away afterwards, so the rule holds again.
"""

from __future__ import annotations

import warnings

import pytest


def test_it_fails_on_an_authlib_deprecation_like_on_any_other_warning() -> None:
    from authlib.deprecate import AuthlibDeprecationWarning, deprecate

    with pytest.raises(AuthlibDeprecationWarning, match="a new deprecation"):
        deprecate("a new deprecation in a test peer")


def test_it_fails_on_a_new_deprecation_of_our_own() -> None:
    with pytest.raises(DeprecationWarning):
        warnings.warn("something of ours is deprecated", DeprecationWarning, stacklevel=1)
