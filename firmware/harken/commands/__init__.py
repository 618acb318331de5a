"""The ``harken`` subcommands, one module per family. Each module's ``register(sub)`` adds its
parsers and sets ``handler`` on them: ``handler(args, settings)``, or ``handler(args)`` where it
also sets ``needs_settings=False`` (the operator's ``fleet`` and the first boot's ``provision``
run without a device configuration and load no engine).

Importing a family must stay cheap (no numpy, no engine): ``harken --help`` and ``harken fleet``
import them all. What a command needs beyond that it imports when it runs.
"""

from harken.commands import firstboot, fleet, hardware, knowledge, models, remote, skills, speech, talk

FAMILIES = (talk, remote, speech, skills, knowledge, firstboot, hardware, fleet, models)
"""In the order ``harken --help`` lists them."""
