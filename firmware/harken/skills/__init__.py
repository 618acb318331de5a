"""Skills: what Harken answers itself, exactly and at once, before a question reaches the language model.

A skill is sentence templates (hassil's format) and a handler. ``skill.py`` is the
interface a plugin implements; ``inventory.py`` gathers the built-in skills, the
plugins (entry points ``harken.skills``) and the sentences a user adds; the router
(``pipeline/router.py``) matches a question against them. Handlers that only
compute an answer (clock, maths, units, limits, plugins) run in the skills worker
(``engines/skillset.py``); the ones that act on the device itself (timers, volume,
conversation control) run in the supervisor (``skillhost.py``), where the
player, the light and the durable timer book are.
"""
