"""The evaluation workflow (deterministic orchestration) and its activities (all side effects).

Dependency direction: ``workflows`` knows only activity *names* and the models in ``models``; ``activities`` knows
only the interfaces in ``budeval.backends.base`` and ``budeval.storage.base``; ``worker`` wires real clients in.
"""
