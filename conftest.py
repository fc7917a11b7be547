"""pytest configuration for the whole checkout."""

# docs/api.md repeats the docstrings' examples, which run in their own modules already
# (where the names they use are defined); it is checked by tests/test_docs.py instead.
collect_ignore = ["docs/api.md"]
