"""The numbered notebooks; a package only so that pytest imports their conftest.py apart from tests/conftest.py."""
