"""The DictSR network: encoders, decoders, coupled dictionaries, and the three training branches."""

from dictsr_core.model.dictionaries import CoupledDictionaries, LookupResult
from dictsr_core.model.dictsr import DictSR, DictSRInference
from dictsr_core.model.plain_sr import PlainSR

__all__ = ["CoupledDictionaries", "LookupResult", "DictSR", "DictSRInference", "PlainSR"]
