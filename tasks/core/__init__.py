"""The small core every floor shares: names, key layout, errors, configuration, the store, hand-off records."""
