"""silobridge core: envelope, config, broker client, pipeline, daemon, CLI.

Protocol adapters live in the separate ``adapters`` package and register themselves through the
``silobridge.adapters`` entry-point group; nothing here imports them.
"""
