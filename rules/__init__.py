"""The rule engine: rules are data, operators are code.

- :mod:`rules.expr`: a sandboxed CEL subset compiled once into Python closures;
- :mod:`rules.engine`: versioned rules, the RuleSet snapshot, evaluation, counters;
- :mod:`rules.features`: the feature names rules may read;
- ``rules/lending/*.yaml``: the starter rule set.

Pure Python: no Faust, Kafka or Redis here; the stream shell wires it in.
"""
