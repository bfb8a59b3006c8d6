"""`make demo`: the whole system on an embedded default, with no robot and no internet."""
