"""The first step on every host: its settings, typed and checked before anything runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pyinfra import host, logger
from pyinfra.api import deploy

from tasks.host_failure import fail_host
from tasks.run_memo import once_per_run
from tasks.settings import Settings, SettingsError, unknown_keys

if TYPE_CHECKING:
    from pyinfra.api.inventory import Inventory


@once_per_run
def settings_of(host_name: str, inventory: Inventory) -> Settings:
    """The checked settings of any inventory host (also one outside this run's --limit),
    built once per run. Raises SettingsError naming each bad key."""
    return Settings.from_data(inventory.get_host(host_name).data.dict())


def check_settings(inventory: Inventory) -> Settings | None:
    """Guarantees this host's settings are usable before any step reads them: on a bad
    value the host fails here, naming the key and the fix, and nothing else is planned for
    it. Keys that look like ours but are unknown (typos) are named as warnings."""
    # pyinfra declares every @deploy call to return an OperationMeta; it returns what the
    # function itself returns.
    return cast("Settings | None", _checked_settings(inventory=inventory))


@deploy("Check the settings")
def _checked_settings(inventory: Inventory) -> Settings | None:
    for line in unknown_keys(host.data.dict()):
        logger.warning(f"{host.print_prefix}{line}")
    try:
        return settings_of(host.name, inventory)
    except SettingsError as error:
        fail_host(name="Check the settings", reason=str(error))
        return None
