"""DictSR workbook: coupled dictionaries learned from unpaired data for 4x super-resolution."""

__version__ = "0.1.0"
