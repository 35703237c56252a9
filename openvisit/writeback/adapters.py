"""The vendor profiles by name (as ``notify/providers.py`` names SMS providers)."""

from __future__ import annotations

from openvisit.models.choices import WritebackProfile
from openvisit.writeback.adapter import Adapter
from openvisit.writeback.epic.adapter import EpicAdapter
from openvisit.writeback.generic.adapter import GenericAdapter
from openvisit.writeback.oracle.adapter import OracleAdapter

ADAPTERS: dict[WritebackProfile, Adapter] = {
    "generic": GenericAdapter(),
    "epic": EpicAdapter(),
    "oracle": OracleAdapter(),
}


def adapter_for(profile: WritebackProfile) -> Adapter:
    return ADAPTERS[profile]
