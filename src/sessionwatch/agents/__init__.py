"""Agents: ``sessionwatch agent`` on each machine pushes its sessions to a
central server (``POST /agents/push``); approvals, away mode and budgets set
centrally travel back (``GET /agents/{agent}/commands``).

- :mod:`.wire`: the push batch and the commands answer, validated (both sides);
- :mod:`.registry`: the server side, the ``agents`` facet source;
- :mod:`.api`: the server's routes;
- :mod:`.queue`: the agent's local SQLite queue;
- :mod:`.client`: the agent process (its own engine, the pusher, the commands follower).
"""
