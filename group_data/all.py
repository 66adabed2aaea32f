"""Settings for every host of the inventory: change a default here.

Every setting, its default, what it accepts and what it does is in docs/settings.md.
The defaults themselves are written once, in the settings model (tasks/settings.py):
the line below gives every host each of them, unless this file assigns the setting
itself. To change one for every host, assign it in this file, above or below that
line, for example:

    scaphandre_port = 9100
    prometheus_scrape_interval = "30s"

For one group only, assign it in group_data/<group>.py (e.g. group_data/hypervisors.py)
or in the group's data in inventory.py; for one host, in that host's data in
inventory.py. A host's data wins over its groups' data, which wins over this file.

Run pyinfra from the repository directory, so that this file is read and the model
imported. A bad value fails that host at its first step, naming the setting.
"""

from tasks.settings import defaults_into as _defaults_into

_defaults_into(globals())  # every setting not assigned in this file, with its default
