"""The workbook: profiles, the functions the notebooks call (`stages`), and the papermill runner."""

from dictsr_core.workbook import stages
from dictsr_core.workbook.profiles import PROFILES, Context, Profile, WorkbookError, context, resolve_profile

__all__ = ["stages", "PROFILES", "Context", "Profile", "WorkbookError", "context", "resolve_profile", "run_workbook"]


def run_workbook(*args, **kwargs):
    from dictsr_core.workbook.runner import run_workbook as run

    return run(*args, **kwargs)
