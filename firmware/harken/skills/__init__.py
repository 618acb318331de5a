"""Skills: what Harken answers itself, exactly and at once, before a question reaches the language model.

A skill is sentence templates (hassil's format) and a handler. ``skill.py`` is the
interface a plugin implements; ``catalog.py`` gathers the built-in skills, the
plugins (entry points ``harken.skills``) and the sentences a user adds; the router
(``pipeline/router.py``) matches a question against them. Handlers that only
compute an answer (clock, maths, units, plugins) run in the skills worker
(``engines/skills.py``); the ones that act on the device itself (timers, volume,
conversation control) run in the supervisor (``appliance.py``), where the
player, the light and the durable timer book are.
"""
